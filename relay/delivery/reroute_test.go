package delivery

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/route"
)

// Reroute on a refusal of this host (routing.reroute): the recipient's MX is an in-process go-smtp peer where
// the reply text must be exact (Gmail's multi-line replies), a raw listener for a refused greeting, or smtp-sink
// where one line is enough; the smart host is a real smtp-sink; DNS is a real unbound.

// Gmail's replies as it sends them: every line carries the code and the enhanced code (go-smtp's server adds
// "550-" to the continuation lines and "550 5.7.25" to the last one).
var (
	gmail5725 = replyErr4(550, smtp.EnhancedCode{5, 7, 25}, "5.7.25 [127.0.0.1] The IP address sending this message does not have a\n"+
		"5.7.25 PTR record setup, or the corresponding forward DNS entry does not\n"+
		"5.7.25 point to the sending IP. As a policy, Gmail does not accept messages\n"+
		"5.7.25 from IPs with missing PTR records. For more information, go to\n"+
		" https://support.google.com/mail/answer/81126#ip-rdns a1si1 - gsmtp")
	gmail5726 = replyErr4(550, smtp.EnhancedCode{5, 7, 26}, "5.7.26 This mail has been blocked because the sender is unauthenticated.\n"+
		"5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.\n"+
		"5.7.26\n"+
		"5.7.26  Authentication results:\n"+
		"5.7.26  DKIM = did not pass\n"+
		"5.7.26  SPF [sender.test] with ip: [127.0.0.1] = did not pass\n"+
		"5.7.26\n"+
		" https://support.google.com/mail/answer/81126#authentication a1si1 - gsmtp")
)

// The GMX/1&1 greeting for an address with a bad PTR: multi-line, no enhanced code (EmailVerify/email-verify#38).
const gmxGreeting = "554-gmx.net (mxgmx017) Nemesis ESMTP Service not available\r\n" +
	"554-No SMTP service\r\n" +
	"554-Bad DNS PTR resource record.\r\n" +
	"554 For explanation visit http://postmaster.gmx.com/en/error-messages?ip=127.0.0.1&c=rdns\r\n"

// fakeVerdict is the daemon's dnscheck.Checker as delivery sees it.
type fakeVerdict struct {
	ok       bool
	families []dnscheck.Family
	rechecks atomic.Int32
}

func (v *fakeVerdict) DirectOK() (ok, known bool)        { return v.ok, true }
func (v *fakeVerdict) DirectFamilies() []dnscheck.Family { return v.families }
func (v *fakeVerdict) Recheck()                          { v.rechecks.Add(1) }

// rerouteEnv is one recipient domain (dest.test) whose MX is at mxIP:port, a sender domain whose MX collects
// DSNs, and an smtp-sink smart host.
type rerouteEnv struct {
	port    int
	sh      *relaytest.Sink
	senders *relaytest.Sink // sender.test's MX: where DSNs go
	dns     string
	st      *queue.Store
	cfg     *config.Config
	logs    *testkit.Buffer
}

// newRerouteEnv starts the sinks and unbound; mxIPs are dest.test's MX hosts in preference order (the caller
// runs the MX peers on them at env.port). zones adds records.
func newRerouteEnv(t *testing.T, port int, mxIPs []string, zones ...string) *rerouteEnv {
	t.Helper()
	relaytest.Require(t, "smtp-sink", "unbound")
	e := &rerouteEnv{port: port, logs: &testkit.Buffer{}}
	e.sh = relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.69:0", Hostname: "smtp.isp.test"})
	e.senders = relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.68:" + strconv.Itoa(port), Hostname: "mx1.sender.test"})
	recs := append(mxZone("dest.test", mxIPs...), mxZone("sender.test", "127.0.0.68")...)
	e.dns = dnstest.StartUnbound(t, append(recs, zones...)...)
	e.st = openStore(t, t.TempDir())
	e.cfg = testConfig(port)
	e.cfg.Routing.Mode = "direct"
	e.cfg.Routing.Reroute = true
	e.cfg.Smarthosts = []config.Smarthost{smarthostEntry(e.sh.Addr(), config.SmarthostNoTLS, nil)}
	// Long backoff: a recipient that is not rerouted at once would wait an hour, so "at once" is observable.
	e.cfg.Queue.RetryMin = config.Duration(time.Hour)
	e.cfg.Queue.RetryMax = config.Duration(time.Hour)
	return e
}

// run starts the scheduler with verdict v and a log the test can read.
func (e *rerouteEnv) run(t *testing.T, v route.VerdictSource, obs Observers) *recorder {
	t.Helper()
	rec := &recorder{}
	obs.OnAttempt = rec.add
	opts := Options{IOTimeout: 5 * time.Second, Jitter: func(n int64) int64 { return n / 2 }}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := New(NewSettings(e.cfg), Env{Store: e.st, Resolver: resolver(t, e.dns), Verdict: v, Log: log, Observers: obs, Options: opts})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("delivery log:\n%s", e.logs.String())
		}
	})
	testkit.Serve(t, "the scheduler", s.Run) // its cleanup runs first: the log is complete when it is shown
	return rec
}

// outcomes lists "route outcome" per attempt of rcpt, in attempt order. (A reroute's line is written after its
// commit, and the smart host's attempt may start and end in between: the log's order can differ.)
func outcomes(rec *recorder, rcpt string) []string {
	var mine []Result
	for _, r := range rec.list() {
		if r.Rcpt == rcpt {
			mine = append(mine, r)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].Attempt < mine[j].Attempt })
	var out []string
	for _, r := range mine {
		out = append(out, string(r.Route)+" "+string(r.Outcome))
	}
	return out
}

func TestReroute_Gmail5725AtRCPT(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.61")
	mx := startFake(t, "127.0.0.61:"+strconv.Itoa(port), func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.61"})
	var reasons []string
	var mu sync.Mutex
	v := &fakeVerdict{ok: true}
	rec := e.run(t, v, Observers{OnReroute: func(reason string) { mu.Lock(); reasons = append(reasons, reason); mu.Unlock() }})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("gmail-rcpt"), "b@dest.test")

	got := e.sh.WaitMessages(t, 1, 15*time.Second)
	if got[0].From != "a@sender.test" || len(got[0].To) != 1 || got[0].To[0] != "b@dest.test" {
		t.Errorf("the smart host got %q -> %v", got[0].From, got[0].To)
	}
	waitFor(t, "the queue to empty", 10*time.Second, func() bool { return queueEmpty(t, e.st) })
	if o := settledOutcomes(t, rec, "b@dest.test", 2); strings.Join(o, ", ") != "direct rerouted, smarthost sent" {
		t.Errorf("attempts %v, want direct rerouted then smarthost sent", o)
	}
	var first Result
	for _, r := range rec.list() {
		if r.Outcome == Rerouted {
			first = r
		}
	}
	if first.Status.Code != 550 || first.Status.Enhanced.String() != "5.7.25" || !strings.Contains(first.Status.Text, "missing PTR records") {
		t.Errorf("rerouted attempt recorded %+v, want Gmail's 550 5.7.25 with its text", first.Status)
	}
	if len(mx.messages()) != 0 || e.senders.MessageCount() != 0 {
		t.Errorf("MX got %d messages, the sender %d DSNs; want none", len(mx.messages()), e.senders.MessageCount())
	}
	log := e.logs.String()
	for _, want := range []string{"status=rerouted", "route=direct", "reason=ptr", "fix=", "route=smarthost", "status=sent"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	mu.Lock()
	if strings.Join(reasons, ",") != "ptr" {
		t.Errorf("OnReroute reasons %v, want [ptr]", reasons)
	}
	mu.Unlock()
	if v.rechecks.Load() == 0 {
		t.Errorf("the verdict was not rechecked after the reroute")
	}
}

// The history of a rerouted recipient keeps both attempts: here the smart host defers, so the message stays
// queued and can be read.
func TestReroute_HistoryShowsBoth(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.62")
	startFake(t, "127.0.0.62:"+strconv.Itoa(port), func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.62"})
	e.sh.Stop()
	e.sh = relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.69:0",
		Reject: map[string]string{"RCPT": "451 4.3.0 try again later"}})
	e.cfg.Smarthosts[0].Address = e.sh.Addr()
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	id := put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("history"), "b@dest.test")
	waitFor(t, "two attempts", 15*time.Second, func() bool { return len(rec.list()) >= 2 })
	m, err := e.st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Recipients[0].History
	if len(h) != 2 || h[0].Route != "direct" || h[0].Outcome != "rerouted" || h[0].Code != 550 || h[0].Enhanced != "5.7.25" ||
		h[1].Route != "smarthost" || h[1].Outcome != "deferred" || h[1].Code != 451 {
		t.Errorf("history %+v, want direct rerouted 550 5.7.25, then smarthost deferred 451", h)
	}
	if m.Recipients[0].State != queue.StateDeferred {
		t.Errorf("state %s, want deferred", m.Recipients[0].State)
	}
}

// rawGreeter answers every connection with greeting and hangs up after the client's next line.
func rawGreeter(t *testing.T, addr, greeting string) *atomic.Int32 {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = c.Write([]byte(greeting))
				line, _ := bufio.NewReader(c).ReadString('\n')
				if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
					_, _ = c.Write([]byte("221 bye\r\n"))
				}
			}()
		}
	}()
	return &conns
}

// A refusal in the greeting (GMX, for a bad PTR) reroutes at once: the other MX hosts of the domain, which
// apply the same policy, are not tried.
func TestReroute_AtGreeting(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.63")
	conns := rawGreeter(t, "127.0.0.63:"+strconv.Itoa(port), gmxGreeting)
	backup := startFake(t, "127.0.0.64:"+strconv.Itoa(port), nil)
	e := newRerouteEnv(t, port, []string{"127.0.0.63", "127.0.0.64"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("greeting"), "b@dest.test")
	e.sh.WaitMessages(t, 1, 15*time.Second)
	if o := settledOutcomes(t, rec, "b@dest.test", 2); strings.Join(o, ", ") != "direct rerouted, smarthost sent" {
		t.Errorf("attempts %v, want direct rerouted then smarthost sent", o)
	}
	if conns.Load() != 1 || backup.sessionCount() != 0 {
		t.Errorf("refusing MX saw %d connections, the backup MX %d sessions; want 1 and 0", conns.Load(), backup.sessionCount())
	}
	if r := firstAttempt(rec); r.Status.Code != 554 || !strings.Contains(r.Status.Text, "Bad DNS PTR resource record") {
		t.Errorf("rerouted on %+v", r.Status)
	}
}

func TestReroute_AfterDATA(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.65")
	mx := startFake(t, "127.0.0.65:"+strconv.Itoa(port), func(f *fakePeer) {
		f.dataErr = func(int) error { return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.65"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("data"), "b@dest.test", "c@dest.test")
	got := e.sh.WaitMessages(t, 1, 15*time.Second)
	if len(got[0].To) != 2 {
		t.Errorf("the smart host got recipients %v, want both in one transaction", got[0].To)
	}
	waitFor(t, "the queue to empty", 10*time.Second, func() bool { return queueEmpty(t, e.st) })
	// The attempts are logged (and the hook called) just after their outcome is committed.
	waitFor(t, "the deliveries' log lines", 10*time.Second, func() bool { return rec.count(Sent) >= 2 })
	for _, rcpt := range []string{"b@dest.test", "c@dest.test"} {
		if o := settledOutcomes(t, rec, rcpt, 2); strings.Join(o, ", ") != "direct rerouted, smarthost sent" {
			t.Errorf("%s: attempts %v, want direct rerouted then smarthost sent", rcpt, o)
		}
	}
	if len(mx.messages()) != 0 {
		t.Errorf("the refusing MX kept %d messages", len(mx.messages()))
	}
}

// Gmail's 5.7.26 is the sender domain's SPF/DKIM: rerouting would not fix it. The recipient bounces, and the
// DSN and the log say which record to fix.
func TestReroute_SenderAuthBouncesWithFix(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.66")
	startFake(t, "127.0.0.66:"+strconv.Itoa(port), func(f *fakePeer) {
		f.dataErr = func(int) error { return gmail5726 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.66"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{OnReroute: func(r string) { t.Errorf("OnReroute(%q) for an SPF/DKIM refusal", r) }})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("spf"), "b@dest.test")
	dsn := e.senders.WaitMessages(t, 1, 15*time.Second)[0]
	if o := outcomes(rec, "b@dest.test"); strings.Join(o, ", ") != "direct bounced" {
		t.Errorf("attempts %v, want one direct bounce", o)
	}
	if n := e.sh.MessageCount(); n != 0 {
		t.Errorf("the smart host got %d messages for an SPF/DKIM refusal", n)
	}
	text := string(bytes.Join(bytes.Fields(dsn.Data), []byte(" "))) // unwrap the DSN's folded text
	for _, want := range []string{"Status: 5.7.26", "Diagnostic-Code: smtp; 550 5.7.26", "SPF", "DKIM", "TXT record",
		"enable DKIM for sender.test in ptrelay", "`ptrelay check -domain sender.test`"} {
		if !strings.Contains(text, want) {
			t.Errorf("the DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	log := e.logs.String()
	if !strings.Contains(log, "status=bounced") || !strings.Contains(log, "reason=spf-dkim") || !strings.Contains(log, "SPF TXT record") {
		t.Errorf("the bounce's log line does not name the record to fix:\n%s", log)
	}
}

// Postfix's reject_unknown_client_hostname answers 450: a temporary reply that would otherwise wait the backoff
// (an hour here) for days. It is rerouted at once.
func TestReroute_450CannotFindHostname(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.67")
	mx := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.67:" + strconv.Itoa(port), Hostname: "mx1.dest.test",
		Reject: map[string]string{"RCPT": "450 4.7.1 Client host rejected: cannot find your hostname, [127.0.0.1]"}})
	e := newRerouteEnv(t, port, []string{"127.0.0.67"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("hostname"), "b@dest.test")
	e.sh.WaitMessages(t, 1, 15*time.Second)
	if o := settledOutcomes(t, rec, "b@dest.test", 2); strings.Join(o, ", ") != "direct rerouted, smarthost sent" {
		t.Errorf("attempts %v, want direct rerouted then smarthost sent", o)
	}
	if mx.MessageCount() != 0 {
		t.Errorf("the refusing MX completed %d transactions", mx.MessageCount())
	}
}

// Without a smart host, or with routing.reroute = false, a 5.7.25 bounces as it always did (with the PTR fix in
// the DSN), and nothing is remembered.
func TestReroute_DisabledBounces(t *testing.T) {
	for _, c := range []struct {
		name      string
		smarthost bool
		reroute   bool
	}{{"no smart host", false, true}, {"reroute off", true, false}} {
		t.Run(c.name, func(t *testing.T) {
			port := relaytest.FreePort(t, "127.0.0.61")
			startFake(t, "127.0.0.61:"+strconv.Itoa(port), func(f *fakePeer) {
				f.rcptErr = func(int, string) error { return gmail5725 }
			})
			e := newRerouteEnv(t, port, []string{"127.0.0.61"})
			e.cfg.Routing.Reroute = c.reroute
			if !c.smarthost {
				e.cfg.Smarthosts = nil
			}
			rec := e.run(t, &fakeVerdict{ok: true}, Observers{OnReroute: func(r string) { t.Errorf("OnReroute(%q)", r) }})
			put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("noreroute"), "b@dest.test")
			dsn := e.senders.WaitMessages(t, 1, 15*time.Second)[0]
			if o := outcomes(rec, "b@dest.test"); strings.Join(o, ", ") != "direct bounced" {
				t.Errorf("attempts %v, want one direct bounce", o)
			}
			if !bytes.Contains(dsn.Data, []byte("Status: 5.7.25")) || !bytes.Contains(dsn.Data, []byte("PTR")) {
				t.Errorf("DSN:\n%s", dsn.Data)
			}
			if e.sh.MessageCount() != 0 {
				t.Errorf("the smart host got mail")
			}
		})
	}
}

// After a reroute the recipient domain goes to the smart host for a while: the next message to it does not
// knock at the MX again.
func TestReroute_DomainRemembered(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.62")
	mx := startFake(t, "127.0.0.62:"+strconv.Itoa(port), func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.62"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("first"), "b@dest.test")
	e.sh.WaitMessages(t, 1, 15*time.Second)
	sessions := mx.sessionCount()
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("second"), "c@DEST.test")
	e.sh.WaitMessages(t, 2, 15*time.Second)
	if mx.sessionCount() != sessions {
		t.Errorf("the refusing MX was tried again (%d sessions, then %d)", sessions, mx.sessionCount())
	}
	if o := settledOutcomes(t, rec, "c@DEST.test", 1); strings.Join(o, ", ") != "smarthost sent" {
		t.Errorf("second message: attempts %v, want smarthost sent", o)
	}
}

// When IPv6 egress fails the check and IPv4 passes, direct delivery skips the MX addresses of IPv6: dest.test's
// preferred MX has only an IPv6 address, its backup an IPv4 one.
func TestDelivery_DirectFamilies(t *testing.T) {
	for _, c := range []struct {
		name     string
		families []dnscheck.Family
		want     string // which MX gets the message
	}{
		{"ipv4 only", []dnscheck.Family{dnscheck.IPv4}, "v4"},
		{"both", []dnscheck.Family{dnscheck.IPv4, dnscheck.IPv6}, "v6"},
		{"none known", nil, "v6"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v6 := startFake(t, "[::1]:0", nil)
			port := portOf(t, v6.addr)
			v4 := startFake(t, "127.0.0.64:"+strconv.Itoa(port), nil)
			e := newRerouteEnv(t, port, nil,
				"dest.test. MX 10 mx1.dest.test.", "mx1.dest.test. AAAA ::1",
				"dest.test. MX 20 mx2.dest.test.", "mx2.dest.test. A 127.0.0.64")
			e.cfg.Smarthosts = nil
			e.run(t, &fakeVerdict{ok: true, families: c.families}, Observers{})
			put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("family"), "b@dest.test")
			waitFor(t, "delivery", 15*time.Second, func() bool { return len(v4.messages())+len(v6.messages()) > 0 })
			got := "v4"
			if len(v6.messages()) > 0 {
				got = "v6"
			}
			if got != c.want {
				t.Errorf("delivered over %s, want %s", got, c.want)
			}
		})
	}
}

// settledOutcomes is outcomes once rcpt has n attempts: a peer has the message before the attempt's outcome is
// committed and its line written, so a test that waited for the peer must also wait for the line.
func settledOutcomes(t *testing.T, rec *recorder, rcpt string, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d attempts of %s", n, rcpt), 10*time.Second, func() bool { return len(outcomes(rec, rcpt)) >= n })
	return outcomes(rec, rcpt)
}

func firstAttempt(rec *recorder) Result {
	for _, r := range rec.list() {
		if r.Attempt == 1 {
			return r
		}
	}
	return Result{}
}

// A smart host's refusal is about the smart host: a blocklist reply there (its own address, or its next hop's)
// gets no advice about our egress address, while an SPF refusal still names the sender domain's record.
func TestReroute_SmarthostRefusalAdvice(t *testing.T) {
	for _, c := range []struct {
		name, reply string
		fix         string // expected in the DSN and the log; "" = none of ours
	}{
		{"blocklist", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org", ""},
		{"spf", "550 5.7.23 The message was rejected because of Sender Policy Framework violation", "SPF record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := relaytest.FreePort(t, "127.0.0.68")
			e := newRerouteEnv(t, port, []string{"127.0.0.61"})
			e.sh.Stop()
			e.sh = relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.69:0", Reject: map[string]string{"RCPT": c.reply}})
			e.cfg.Smarthosts[0].Address = e.sh.Addr()
			e.cfg.Routing.Mode = "smarthost"
			// The DSN goes straight to the sender's MX, past the refusing smart host.
			e.cfg.Routing.Rules = []config.Rule{{Domains: []string{"sender.test"}, Via: "direct"}}
			rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
			put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("sh-"+c.name), "b@dest.test")
			dsn := e.senders.WaitMessages(t, 1, 15*time.Second)[0]
			if o := outcomes(rec, "b@dest.test"); strings.Join(o, ", ") != "smarthost bounced" {
				t.Errorf("attempts %v, want one smart host bounce", o)
			}
			text := string(bytes.Join(bytes.Fields(dsn.Data), []byte(" ")))
			log := e.logs.String()
			if c.fix == "" {
				if strings.Contains(text, "egress IP") || strings.Contains(log, "reason=") {
					t.Errorf("advice about our egress address for the smart host's refusal:\n%s\n%s", dsn.Data, log)
				}
				return
			}
			if !strings.Contains(text, c.fix) || !strings.Contains(log, "reason=spf") {
				t.Errorf("no %q advice:\n%s\n%s", c.fix, dsn.Data, log)
			}
		})
	}
}

// A [[routing.rules]] entry with via = "direct" pins its recipients: a refusal of this host's reputation is not
// rerouted to the smart host (the explicit rule wins, as a Postfix transport entry does). It bounces like any
// 5xx, with the PTR fix in the DSN.
func TestReroute_RulePinnedDirectIsNotRerouted(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.61")
	mx := startFake(t, "127.0.0.61:"+strconv.Itoa(port), func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.61"})
	e.cfg.Routing.Mode = "auto"
	e.cfg.Routing.Rules = []config.Rule{{Domains: []string{"DEST.test"}, Via: "direct"}}
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{OnReroute: func(r string) { t.Errorf("OnReroute(%q) for a pinned domain", r) }})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("pinned"), "b@dest.test")
	dsn := e.senders.WaitMessages(t, 1, 15*time.Second)[0]
	if o := outcomes(rec, "b@dest.test"); strings.Join(o, ", ") != "direct bounced" {
		t.Errorf("attempts %v, want one direct bounce", o)
	}
	if e.sh.MessageCount() != 0 {
		t.Errorf("the smart host got mail for a domain pinned to direct delivery")
	}
	if mx.sessionCount() == 0 || !bytes.Contains(dsn.Data, []byte("Status: 5.7.25")) || !bytes.Contains(dsn.Data, []byte("PTR")) {
		t.Errorf("MX sessions %d; DSN:\n%s", mx.sessionCount(), dsn.Data)
	}
}

// A sender rule pins too, and wins over the domain memory of an earlier reroute: the first message (no rule)
// is rerouted and its domain remembered; the pinned sender's message to that domain still goes direct.
func TestReroute_SenderPinnedIgnoresDomainMemory(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.62")
	var mu sync.Mutex
	var asked []string // recipients the MX was asked for
	startFake(t, "127.0.0.62:"+strconv.Itoa(port), func(f *fakePeer) {
		f.rcptErr = func(_ int, to string) error { mu.Lock(); asked = append(asked, to); mu.Unlock(); return gmail5725 }
	})
	e := newRerouteEnv(t, port, []string{"127.0.0.62"})
	e.cfg.Routing.Rules = []config.Rule{{Senders: []string{"ceo@sender.test"}, Via: "direct"}}
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("first"), "b@dest.test")
	e.sh.WaitMessages(t, 1, 15*time.Second)
	put(t, e.st, queue.Envelope{From: "ceo@sender.test"}, msgBody("second"), "c@dest.test")
	e.senders.WaitMessages(t, 1, 15*time.Second) // the bounce of the pinned message
	if o := outcomes(rec, "c@dest.test"); strings.Join(o, ", ") != "direct bounced" {
		t.Errorf("pinned sender: attempts %v, want one direct bounce", o)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, ",") != "b@dest.test,c@dest.test" || e.sh.MessageCount() != 1 {
		t.Errorf("the MX was asked for %v, the smart host got %d messages: want both asked, one smart host message",
			asked, e.sh.MessageCount())
	}
}

// rawEHLORefuser greets, answers EHLO with reply, and hangs up after the client's next line (Postfix with
// smtpd_delay_reject = no refuses a bad HELO name right at EHLO).
func rawEHLORefuser(t *testing.T, addr, reply string) *atomic.Int32 {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var ehlos atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				_, _ = c.Write([]byte("220 mx1.dest.test ESMTP\r\n"))
				line, _ := r.ReadString('\n')
				if strings.HasPrefix(strings.ToUpper(line), "EHLO") {
					ehlos.Add(1)
					_, _ = c.Write([]byte(reply + "\r\n"))
				}
				line, _ = r.ReadString('\n')
				if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
					_, _ = c.Write([]byte("221 bye\r\n"))
				}
			}()
		}
	}()
	return &ehlos
}

// A refusal of the EHLO name at EHLO (Postfix's reject_non_fqdn_helo_hostname) is a refusal of this host: the
// smart host, which greets with its own name, takes the mail at once; the domain's other MX is not tried.
func TestReroute_AtEHLO(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.63")
	ehlos := rawEHLORefuser(t, "127.0.0.63:"+strconv.Itoa(port), "504 5.5.2 <relay>: Helo command rejected: need fully-qualified hostname")
	backup := startFake(t, "127.0.0.64:"+strconv.Itoa(port), nil)
	e := newRerouteEnv(t, port, []string{"127.0.0.63", "127.0.0.64"})
	rec := e.run(t, &fakeVerdict{ok: true}, Observers{})
	put(t, e.st, queue.Envelope{From: "a@sender.test"}, msgBody("ehlo"), "b@dest.test")
	e.sh.WaitMessages(t, 1, 15*time.Second)
	if o := settledOutcomes(t, rec, "b@dest.test", 2); strings.Join(o, ", ") != "direct rerouted, smarthost sent" {
		t.Errorf("attempts %v, want direct rerouted then smarthost sent", o)
	}
	if ehlos.Load() != 1 || backup.sessionCount() != 0 {
		t.Errorf("refusing MX saw %d EHLOs, the backup MX %d sessions; want 1 and 0", ehlos.Load(), backup.sessionCount())
	}
	if r := firstAttempt(rec); r.Status.Code != 504 || !strings.Contains(e.logs.String(), "reason=helo") {
		t.Errorf("rerouted on %+v; log:\n%s", r.Status, e.logs.String())
	}
}
