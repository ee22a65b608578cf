package delivery

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// testClock is an injected clock the test moves by hand (Options.Now). It starts a little ahead of the real time
// so that mail committed by the queue (with real arrival times) is due at once.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now().Add(time.Minute)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

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

	clk.Add(time.Minute)
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

// TestSmarthost_RateLimit: with message_rate = ["30/min"] the 31st message within a minute (an injected clock
// that does not move) goes to the next host with when_limited = "next", and with "wait" stays for the first host
// until its window frees, without counting as an attempt.
func TestSmarthost_RateLimit(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			a := startFake(t, "127.0.0.1:0", nil)
			b := startFake(t, "127.0.0.1:0", nil)
			clk := newTestClock()
			cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) {
				h.MessageRate = []string{"30/min"}
				if wait {
					h.WhenLimited = config.LimitedWait
				}
			}), plainHost("b", b.addr, nil))
			st := openStore(t, t.TempDir())
			for i := range 31 {
				put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody(fmt.Sprintf("r%d", i)), "x@far.test")
			}
			s, rec, _ := run(t, cfg, st, nil, Options{Now: clk.Now})
			if !wait {
				waitFor(t, "31 deliveries", 20*time.Second, func() bool { return rec.count(Sent) == 31 })
				if len(a.messages()) != 30 || len(b.messages()) != 1 {
					t.Fatalf("a got %d, b %d; want 30 and the 31st at b", len(a.messages()), len(b.messages()))
				}
				return
			}
			waitFor(t, "30 deliveries and one wait", 20*time.Second, func() bool { return rec.count(Sent) == 30 && rec.count(Deferred) == 1 })
			var w Result
			for _, r := range rec.list() {
				if r.Outcome == Deferred {
					w = r
				}
			}
			if dsnField(w) != "4.4.5" || !strings.Contains(w.Status.Text, "sending limit") || w.Attempt != 0 {
				t.Errorf("the waiting message: %+v (%s), want 4.4.5 at its sending limit, not counted as an attempt", w, w.Reply())
			}
			if hs := s.SmarthostStatus()[0]; hs.State != "limited" || hs.Budgets[0].Used != 30 || hs.Budgets[0].Limit != 30 {
				t.Errorf("a's status %+v, want limited with 30/30 msg 1m", hs)
			}
			m, err := st.Get(w.ID)
			if err != nil {
				t.Fatal(err)
			}
			if next := m.Recipients[0].NextAttempt; next.Before(clk.Now()) || next.After(clk.Now().Add(time.Minute+2*time.Second)) {
				t.Errorf("waits until %v, want within a minute of %v", next, clk.Now())
			}
			clk.Add(time.Minute + 2*time.Second)
			s.Kick()
			waitFor(t, "the 31st through a once its window frees", 20*time.Second, func() bool { return len(a.messages()) == 31 })
			if len(b.messages()) != 0 {
				t.Errorf("with when_limited = wait, b got %d messages", len(b.messages()))
			}
		})
	}
}

// TestSmarthost_DayWindowSurvivesRestart: a day budget spent before a restart is still spent after it (the
// windows are in the queue database): the 11th recipient under recipient_rate = ["10/day"] goes to the next
// host.
func TestSmarthost_DayWindowSurvivesRestart(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", nil)
	b := startFake(t, "127.0.0.1:0", nil)
	clk := newTestClock()
	cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) { h.RecipientRate = []string{"10/day"} }),
		plainHost("b", b.addr, nil))
	dir := t.TempDir()
	st := openStore(t, dir)
	for i := range 10 {
		put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody(fmt.Sprintf("d%d", i)), "x@far.test")
	}
	_, rec, stop := run(t, cfg, st, nil, Options{Now: clk.Now})
	waitFor(t, "ten through a", 15*time.Second, func() bool { return rec.count(Sent) == 10 })
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Add(time.Hour)
	st2 := openStore(t, dir)
	put(t, st2, queue.Envelope{From: "s@sender.test"}, msgBody("eleventh"), "x@far.test")
	s2, rec2, _ := run(t, cfg, st2, nil, Options{Now: clk.Now})
	waitFor(t, "the eleventh", 15*time.Second, func() bool { return rec2.count(Sent) == 1 })
	if len(a.messages()) != 10 || len(b.messages()) != 1 {
		t.Errorf("a got %d, b %d: the day's budget of a was forgotten at the restart", len(a.messages()), len(b.messages()))
	}
	if bu := s2.SmarthostStatus()[0].Budgets[0]; bu.Used != 10 || bu.Limit != 10 || bu.Window != 24*time.Hour {
		t.Errorf("a's budget after the restart: %+v", bu)
	}
}

// TestSmarthost_MaxRecipientsSplits: a message for five recipients through a host that takes two per
// transaction goes in three transactions, all delivered.
func TestSmarthost_MaxRecipientsSplits(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", nil)
	cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) { h.MaxRecipients = 2 }))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("split"), "r1@far.test", "r2@far.test", "r3@far.test", "r4@far.test", "r5@far.test")
	_, rec, _ := run(t, cfg, st, nil, Options{})
	waitFor(t, "five deliveries", 15*time.Second, func() bool { return rec.count(Sent) == 5 })
	var sizes []int
	var all []string
	for _, m := range a.messages() {
		sizes = append(sizes, len(m.To))
		all = append(all, m.To...)
	}
	slices.Sort(sizes)
	slices.Sort(all)
	if fmt.Sprint(sizes) != "[1 2 2]" || strings.Join(all, ",") != "r1@far.test,r2@far.test,r3@far.test,r4@far.test,r5@far.test" {
		t.Errorf("transactions of %v recipients with %v, want two of 2 and one of 1, each recipient once", sizes, all)
	}
	waitFor(t, "the queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
}

// TestSmarthost_SendersAndRefusedSender: senders = ["a.test"] keeps other senders off a host; a sender a host
// refuses at MAIL goes to the next host; refused by every host that may carry it, it bounces.
func TestSmarthost_SendersAndRefusedSender(t *testing.T) {
	var mu sync.Mutex
	cRefuses := false
	// b always refuses ceo@ as a sender; c only once told to.
	refuse := func(at string) func(string) error {
		return func(from string) error {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(from, "ceo@") && (at == "b" || cRefuses) {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address rejected: not owned by user relay"}
			}
			return nil
		}
	}
	a := startFake(t, "127.0.0.1:0", nil)
	b := startFake(t, "127.0.0.1:0", func(f *fakePeer) { f.mailErrFrom = refuse("b") })
	c := startFake(t, "127.0.0.1:0", func(f *fakePeer) { f.mailErrFrom = refuse("c") })
	cfg := shConfig(
		plainHost("a", a.addr, func(h *config.Smarthost) { h.Senders = []string{"a.test"} }),
		plainHost("b", b.addr, nil),
		plainHost("c", c.addr, nil))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "x@a.test"}, msgBody("from-a"), "r@far.test")
	put(t, st, queue.Envelope{From: "x@b.test"}, msgBody("from-b"), "r@far.test")
	put(t, st, queue.Envelope{From: "ceo@b.test"}, msgBody("ceo-to-c"), "r@far.test")
	_, rec, _ := run(t, cfg, st, nil, Options{})
	waitFor(t, "three deliveries", 15*time.Second, func() bool { return rec.count(Sent) == 3 })
	if got := strings.Join(subjects(a.messages()), ","); got != "from-a" {
		t.Errorf("a (senders a.test) got %q", got)
	}
	if got := strings.Join(subjects(b.messages()), ","); got != "from-b" {
		t.Errorf("b got %q", got)
	}
	if got := strings.Join(subjects(c.messages()), ","); got != "ceo-to-c" {
		t.Errorf("c got %q: the sender b refused did not go on to c", got)
	}

	mu.Lock()
	cRefuses = true
	mu.Unlock()
	put(t, st, queue.Envelope{From: "ceo@b.test"}, msgBody("ceo-nowhere"), "r@far.test")
	waitFor(t, "the bounce", 15*time.Second, func() bool { return rec.count(Bounced) == 1 })
	for _, r := range rec.list() {
		if r.Outcome == Bounced && (r.Status.Code != 550 || !strings.HasPrefix(r.Relay, "c/")) {
			t.Errorf("bounce %+v, want c's 550 (the last host's refusal)", r)
		}
	}
	if rec.count(Deferred) != 0 {
		t.Errorf("%d deferrals", rec.count(Deferred))
	}
}

// TestSmarthost_QuotaLimitsTheHost: a host that refuses for its daily quota (Google's "550 5.4.5 Daily SMTP relay
// limit exceeded") is limited: that message and the next ones go to the next host without asking it again,
// until its window frees; nothing bounces.
func TestSmarthost_QuotaLimitsTheHost(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.rcptErr = func(_ int, _ string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 4, 5}, Message: "Daily SMTP relay limit exceeded for user"}
		}
	})
	b := startFake(t, "127.0.0.1:0", nil)
	clk := newTestClock()
	cfg := shConfig(plainHost("a", a.addr, nil), plainHost("b", b.addr, nil))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("q1"), "x@far.test")
	s, rec, _ := run(t, cfg, st, nil, Options{Now: clk.Now})
	waitFor(t, "the first through b", 15*time.Second, func() bool { return len(b.messages()) == 1 })
	sessions := a.sessionCount()
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("q2"), "x@far.test")
	waitFor(t, "the second through b", 15*time.Second, func() bool { return len(b.messages()) == 2 })
	if a.sessionCount() != sessions {
		t.Errorf("a limited host was asked again")
	}
	hs := s.SmarthostStatus()[0]
	if hs.State != "limited" || !hs.LimitedUntil.Equal(clk.Now().Add(noWindowQuotaPause)) || !strings.Contains(hs.LastError, "5.4.5") {
		t.Errorf("a's status %+v, want limited for an hour (no window configured) with the 5.4.5", hs)
	}
	if rec.count(Bounced) != 0 || rec.count(Deferred) != 0 {
		t.Errorf("%d bounced, %d deferred", rec.count(Bounced), rec.count(Deferred))
	}
}

// TestSmarthost_ClientCertificate: a host that wants a client certificate (a connector that knows the sending
// server by it) gets the one tls_client_cert names; without it the TLS handshake fails and the mail is deferred.
func TestSmarthost_ClientCertificate(t *testing.T) {
	serverCert, serverKey, serverPool := relaytest.MakeCert(t, t.TempDir(), "127.0.0.1")
	clientCert, clientKey, clientPool := relaytest.MakeCert(t, t.TempDir(), "relay.contoso.test")
	pair, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	f := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.tls = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	})
	for _, withCert := range []bool{true, false} {
		t.Run(fmt.Sprintf("cert=%v", withCert), func(t *testing.T) {
			h := config.NewSmarthost("connector", f.addr)
			h.Auth = config.AuthNone
			if withCert {
				h.TLSClientCert, h.TLSClientKey = clientCert, clientKey
			}
			st := openStore(t, t.TempDir())
			put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("cert"), "x@far.test")
			_, rec, _ := run(t, shConfig(h), st, nil, Options{RootCAs: serverPool})
			waitFor(t, "an attempt", 15*time.Second, func() bool { return len(rec.list()) >= 1 })
			r := rec.list()[0]
			if !withCert {
				// TLS 1.3: the server's refusal arrives with the first reply after the handshake.
				if r.Outcome != Deferred || !strings.Contains(r.Status.Text, "tls: certificate required") {
					t.Errorf("without the certificate: %+v (%s), want deferred for the missing certificate", r, r.Reply())
				}
				return
			}
			msgs := f.messages()
			if r.Outcome != Sent || len(msgs) != 1 || msgs[0].ClientCert != "relay.contoso.test" {
				t.Errorf("with the certificate: %+v, messages %+v", r, msgs)
			}
		})
	}
}
