package delivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// newTestClock is an injected clock (Options.Now) that starts a little ahead of the real time, so that mail
// committed by the queue (with real arrival times) is due at once; the test moves it with Advance.
func newTestClock() *testClock { return &testClock{t: time.Now().Add(time.Minute)} }

// shConfig routes everything through the smart hosts given, in order.
func shConfig(hosts ...config.Smarthost) *config.Config {
	cfg := testConfig(1)
	cfg.Routing.Mode = config.RoutingSmarthost
	cfg.Smarthosts = hosts
	cfg.Queue.RetryMin = config.Duration(time.Minute)
	cfg.Queue.RetryMax = config.Duration(time.Minute)
	cfg.Queue.Lifetime = config.Duration(5 * 24 * time.Hour) // the injected clocks move by hours
	return cfg
}

// plainHost is a smart host without TLS or login.
func plainHost(name, addr string, edit func(*config.Smarthost)) config.Smarthost {
	h := config.NewSmarthost(name, addr)
	h.TLS = config.SmarthostNoTLS
	if edit != nil {
		edit(&h)
	}
	return h
}

// subjects are the Subject lines of what a fake peer received, in order.
func subjects(msgs []fakeMsg) []string {
	var out []string
	for _, m := range msgs {
		for _, line := range strings.Split(string(m.Data), "\r\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// calls are the smart-host observers' calls.
type calls struct {
	down, up, authBad []string
	authOK            int
	downErr           []string
	downWaiting       []int
}

// observed collects the smart-host observers' calls.
type observed struct {
	mu sync.Mutex
	c  calls
}

// attach sets the smart-host observers of s (before it runs), keeping its OnAttempt.
func (o *observed) attach(s *Scheduler) {
	s.obs.OnSmarthostDown = func(name, lastErr string, waiting int) {
		o.mu.Lock()
		o.c.down, o.c.downErr, o.c.downWaiting = append(o.c.down, name), append(o.c.downErr, lastErr), append(o.c.downWaiting, waiting)
		o.mu.Unlock()
	}
	s.obs.OnSmarthostUp = func(name string) { o.mu.Lock(); o.c.up = append(o.c.up, name); o.mu.Unlock() }
	s.obs.OnLoginRefused = func(name, reply string) {
		o.mu.Lock()
		o.c.authBad = append(o.c.authBad, name+": "+reply)
		o.mu.Unlock()
	}
	s.obs.OnLoginOK = func(string) { o.mu.Lock(); o.c.authOK++; o.mu.Unlock() }
}

func (o *observed) snapshot() calls {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.c
	c.down, c.up, c.authBad = append([]string(nil), c.down...), append([]string(nil), c.up...), append([]string(nil), c.authBad...)
	c.downErr, c.downWaiting = append([]string(nil), c.downErr...), append([]int(nil), c.downWaiting...)
	return c
}

// runObserved is run with the smart-host observers recorded.
func runObserved(t *testing.T, cfg *config.Config, st *queue.Store, opts Options) (*Scheduler, *recorder, *observed, func()) {
	t.Helper()
	obs := &observed{}
	s, rec, stop := runWith(t, cfg, st, nil, opts, obs.attach)
	return s, rec, obs, stop
}

// TestE2E_SmarthostFailoverRealPeers: the list is a closed port, a server greeting with 421 (smtp-sink), a real
// Postfix that refuses the password (535), an smtp-sink answering MAIL with Amazon SES's "454 Throttling
// failure", one answering RCPT with Google's "550 5.4.5 Daily SMTP relay limit exceeded", and the same real
// Postfix with the right password. Every message arrives through the last one, in order; nothing bounces; the
// failing hosts end down (after smarthost_failover_after failures each) and the quota one limited.
func TestE2E_SmarthostFailoverRealPeers(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "saslpasswd2")
	final := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.24:0"})
	pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{Addr: "127.0.0.25:0", Users: map[string]string{"relayuser": "goodpass"},
		RelayTo: final.Addr()})
	greeter := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.26:0", Close421: []string{"CONNECT"}})
	throttle := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.27:0",
		Reject: map[string]string{"MAIL": "454 4.7.0 Throttling failure: Maximum sending rate exceeded."}})
	quota := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.28:0",
		Reject: map[string]string{"RCPT": "550 5.4.5 Daily SMTP relay limit exceeded for user"}})
	closed := "127.0.0.29:" + strconv.Itoa(relaytest.FreePort(t, "127.0.0.29"))
	dir := t.TempDir()
	pass := func(name, p string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(p+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	login := func(file string) func(*config.Smarthost) {
		return func(h *config.Smarthost) { h.Username, h.PasswordFile = "relayuser", file }
	}
	cfg := shConfig(
		plainHost("closed", closed, nil),
		plainHost("greeter", greeter.Addr(), nil),
		smarthostEntry(pf.Addr(), config.SmarthostSTARTTLS, login(pass("bad", "wrongpass"))),
		plainHost("throttle", throttle.Addr(), nil),
		plainHost("quota", quota.Addr(), nil),
		smarthostEntry(pf.Addr(), config.SmarthostSTARTTLS, login(pass("good", "goodpass"))),
	)
	cfg.Smarthosts[2].Name, cfg.Smarthosts[5].Name = "pfbad", "good"
	cfg.Delivery.Concurrency, cfg.Delivery.PerDestination = 1, 1 // one session at a time: the order is the queue's
	st := openStore(t, t.TempDir())
	const n = 5
	var order []string
	for i := range n {
		order = append(order, put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody(fmt.Sprintf("failover%d", i)), "x@far.test"))
	}
	s, rec, obs, _ := runObserved(t, cfg, st, Options{RootCAs: pf.Pool()})
	waitFor(t, "every message through the healthy smart host", 60*time.Second, func() bool { return rec.count(Sent) == n })
	// The order ptrelay handed them over (Postfix's own queue may reorder what it relays to the sink).
	ids := map[string]int{}
	for i, id := range order {
		ids[id] = i
	}
	for i, r := range rec.list() {
		if ids[r.ID] != i {
			t.Errorf("delivery %d was message %d: out of order", i, ids[r.ID])
		}
	}
	msgs := final.WaitMessages(t, n, 20*time.Second)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Header().Get("Subject")] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("failover%d", i)] {
			t.Errorf("failover%d is not at the sink behind the healthy smart host", i)
		}
	}
	if b := rec.count(Bounced); b != 0 || rec.count(Deferred) != 0 {
		t.Errorf("%d bounced, %d deferred: host-level and quota failures must only move the mail on", b, rec.count(Deferred))
	}
	for _, r := range rec.list() {
		if !strings.HasPrefix(r.Relay, "good/127.0.0.25[127.0.0.25]:") || r.Smarthost != "good" {
			t.Errorf("delivered through %s (%s), want relay=good/127.0.0.25[...]", r.Relay, r.Smarthost)
		}
	}
	want := map[string]string{"closed": "down", "greeter": "down", "pfbad": "down", "throttle": "down", "quota": "limited", "good": "up"}
	for _, h := range s.SmarthostStatus() {
		if h.State != want[h.Name] {
			t.Errorf("smart host %s is %s (last error %q), want %s", h.Name, h.State, h.LastError, want[h.Name])
		}
	}
	o := obs.snapshot()
	if strings.Join(o.down, ",") != "closed,greeter,pfbad,throttle" {
		t.Errorf("hosts reported down: %v", o.down)
	}
	if len(o.authBad) != 3 || !strings.HasPrefix(o.authBad[0], "pfbad: 535") {
		t.Errorf("refused logins reported: %v, want pfbad's 535 three times", o.authBad)
	}
	if greeter.Sessions() != 3 || throttle.Sessions() != 3 || quota.Sessions() != 1 {
		t.Errorf("sessions: greeter %d, throttle %d, quota %d; want 3, 3 (then down) and 1 (then limited)",
			greeter.Sessions(), throttle.Sessions(), quota.Sessions())
	}
}

// TestSmarthost_DownHostComesBack: a host answering 421 is down after three failures in a row and its mail goes
// to the next host; while its pause lasts it is not tried; once the pause is over (an injected clock) one
// delivery probes it, and when that succeeds it is first again.
func TestSmarthost_DownHostComesBack(t *testing.T) {
	var refuse sync.Mutex
	refusing := true
	a := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.mailErr = func(_, _ int) error {
			refuse.Lock()
			defer refuse.Unlock()
			if refusing {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service not available, closing channel"}
			}
			return nil
		}
	})
	b := startFake(t, "127.0.0.1:0", nil)
	clk := newTestClock()
	cfg := shConfig(plainHost("a", a.addr, nil), plainHost("b", b.addr, nil))
	cfg.Delivery.Concurrency, cfg.Delivery.PerDestination = 1, 1
	st := openStore(t, t.TempDir())
	s, rec, obs, _ := runObserved(t, cfg, st, Options{Now: clk.Now})
	for i := range 3 {
		put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody(fmt.Sprintf("m%d", i)), "x@far.test")
	}
	waitFor(t, "three messages through b", 15*time.Second, func() bool { return len(b.messages()) == 3 })
	if o := obs.snapshot(); len(o.down) != 1 || o.down[0] != "a" || !strings.Contains(o.downErr[0], "421") {
		t.Fatalf("down reports %+v, want a once with its 421", o)
	}
	if hs := s.SmarthostStatus(); hs[0].State != "down" || !hs[0].DownUntil.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("a after three failures: %+v, want down for smarthost_down_min", hs[0])
	}
	sessions := a.sessionCount()

	refuse.Lock()
	refusing = false
	refuse.Unlock()
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("during"), "x@far.test")
	waitFor(t, "the message sent during the pause, through b", 15*time.Second, func() bool { return len(b.messages()) == 4 })
	if a.sessionCount() != sessions {
		t.Fatalf("a was tried during its pause")
	}

	clk.Advance(time.Minute)
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("probe"), "x@far.test")
	waitFor(t, "the probe through a", 15*time.Second, func() bool { return len(a.messages()) == 1 })
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("after"), "x@far.test")
	waitFor(t, "the next message through a", 15*time.Second, func() bool { return len(a.messages()) == 2 })
	if got := subjects(a.messages()); strings.Join(got, ",") != "probe,after" {
		t.Errorf("a received %v", got)
	}
	if hs := s.SmarthostStatus(); hs[0].State != "up" {
		t.Errorf("a after its probe: %s", hs[0].State)
	}
	if o := obs.snapshot(); len(o.up) == 0 || o.up[len(o.up)-1] != "a" {
		t.Errorf("up reports %v, want a", o.up)
	}
	if rec.count(Bounced) != 0 || rec.count(Deferred) != 0 {
		t.Errorf("%d bounced, %d deferred", rec.count(Bounced), rec.count(Deferred))
	}
}

// TestSmarthost_PinnedNeverSpills: mail a rule pins to one host (via = "smarthost:NAME") waits for it when it
// fails; it never goes to another host of the list, and is never bounced for it.
func TestSmarthost_PinnedNeverSpills(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.mailErr = func(_, _ int) error {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "try later"}
		}
	})
	b := startFake(t, "127.0.0.1:0", nil)
	cfg := shConfig(plainHost("a", a.addr, nil), plainHost("b", b.addr, nil))
	cfg.Routing.Rules = []config.Rule{{Domains: []string{"pinned.test"}, Via: "smarthost:a"}}
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("pinned"), "x@pinned.test")
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("free"), "y@free.test")
	_, rec, _ := run(t, cfg, st, nil, Options{})
	waitFor(t, "the free message through b and the pinned one deferred", 15*time.Second, func() bool {
		return rec.count(Sent) == 1 && rec.count(Deferred) == 1
	})
	if got := subjects(b.messages()); len(got) != 1 || got[0] != "free" {
		t.Errorf("b received %v: pinned mail spilled", got)
	}
	for _, r := range rec.list() {
		if r.Rcpt == "x@pinned.test" && (r.Outcome != Deferred || !strings.HasPrefix(r.Relay, "a/") || r.Status.Code != 421) {
			t.Errorf("pinned recipient: %+v, want deferred with a's 421", r)
		}
	}
	if rec.count(Bounced) != 0 {
		t.Errorf("a host failure bounced pinned mail")
	}
}
