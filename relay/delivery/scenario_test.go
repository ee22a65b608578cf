package delivery

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// rejectFor answers 550 5.1.1 for one recipient and accepts the others.
func rejectFor(bad string) func(int, string) error {
	return func(_ int, to string) error {
		if to == bad {
			return replyErr4(550, smtp.EnhancedCode{5, 1, 1}, "<"+bad+">: Recipient address rejected: User unknown")
		}
		return nil
	}
}

func TestDelivery_Bounce550SendsDSN(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = rejectFor("nobody@dest.test") })
	st := openStore(t, t.TempDir())
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("bounce"), "nobody@dest.test", "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "DSN delivered", 10*time.Second, func() bool { return rec.count(Sent) == 2 })
	waitFor(t, "queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
	var dsnMsg *fakeMsg
	for _, m := range f.messages() {
		if m.From == "" {
			dsnMsg = &m
		}
	}
	if dsnMsg == nil {
		t.Fatalf("no message from the null sender at the sender's MX")
	}
	if len(dsnMsg.To) != 1 || dsnMsg.To[0] != "a@sender.test" {
		t.Errorf("DSN to %v, want the envelope sender", dsnMsg.To)
	}
	for _, want := range []string{"Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1", "nobody@dest.test", "Subject: bounce"} {
		if !contains(dsnMsg.Data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsnMsg.Data)
		}
	}
	if contains(dsnMsg.Data, "Final-Recipient: rfc822; b@dest.test") {
		t.Errorf("DSN reports the delivered recipient too")
	}
	var bounced, dsnSent bool
	for _, r := range rec.list() {
		if r.ID == id && r.Rcpt == "nobody@dest.test" && r.Outcome == Bounced {
			bounced = true
		}
		if r.IsDSN && r.Outcome == Sent {
			dsnSent = true
		}
	}
	if !bounced || !dsnSent {
		t.Errorf("attempts: %+v", rec.list())
	}
}

func TestDelivery_NullSenderBounceMakesNoDSN(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = rejectFor("nobody@dest.test") })
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("nullsender"), "nobody@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "bounce", 10*time.Second, func() bool { return rec.count(Bounced) == 1 })
	waitFor(t, "queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
	if n := len(f.messages()); n != 0 {
		t.Errorf("peer got %d messages; a null-sender bounce must produce no DSN", n)
	}
	if n := len(rec.list()); n != 1 {
		t.Errorf("%d attempts, want 1: %+v", n, rec.list())
	}
}

func TestDelivery_DNSOutcomes(t *testing.T) {
	f := startFake(t, "127.0.0.1:0", nil)
	port := portOf(t, f.addr)
	dns := dnstest.New(t,
		"nullmx.test. MX 0 .",
		"aonly.test. A 127.0.0.1",
		"exists.test. TXT \"no address here\"",
	)
	dns.Add(mxZone("broken.test", "127.0.0.1")...)
	dns.Fail("broken.test.", 15 /* MX */, dnstest.ServFail)
	cases := []struct {
		rcpt     string
		outcome  Outcome
		enhanced string
	}{
		{"x@nullmx.test", Bounced, "5.1.10"},
		{"x@nxdomain.test", Bounced, "5.1.2"},
		{"x@exists.test", Bounced, "5.4.4"},
		{"x@broken.test", Deferred, "4.4.3"},
		{"x@aonly.test", Sent, "2.0.0"},
	}
	st := openStore(t, t.TempDir())
	for _, c := range cases {
		put(t, st, queue.Envelope{From: ""}, msgBody("dns"), c.rcpt)
	}
	cfg := testConfig(port)
	cfg.Queue.RetryMin = config.Duration(time.Minute)
	cfg.Queue.RetryMax = config.Duration(time.Minute)
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "every domain tried", 10*time.Second, func() bool { return len(rec.list()) >= len(cases) })
	got := map[string]Result{}
	for _, r := range rec.list() {
		got[r.Rcpt] = r
	}
	for _, c := range cases {
		r := got[c.rcpt]
		if r.Outcome != c.outcome || dsnField(r) != c.enhanced {
			t.Errorf("%s: %s dsn=%s (%s), want %s %s", c.rcpt, r.Outcome, dsnField(r), replyText(r.Status), c.outcome, c.enhanced)
		}
	}
	if len(f.messages()) != 1 {
		t.Errorf("peer got %d messages, want the implicit-MX one", len(f.messages()))
	}
}

func TestDelivery_MXFailover(t *testing.T) {
	f := startFake(t, "127.0.0.3:0", nil)
	port := portOf(t, f.addr)
	// mx1 (preference 10) is 127.0.0.2, where nothing listens on the port; mx2 is the fake.
	dns := dnstest.New(t, mxZone("dest.test", "127.0.0.2", "127.0.0.3")...)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("failover"), "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	r := rec.list()[0]
	if !strings.HasPrefix(r.Relay, "mx2.dest.test[127.0.0.3]:") || r.Attempt != 1 {
		t.Errorf("delivered via %s on attempt %d, want mx2 on the first attempt", r.Relay, r.Attempt)
	}
	if len(f.messages()) != 1 {
		t.Errorf("mx2 got %d messages", len(f.messages()))
	}
}

func TestDelivery_EHLONameAndOpportunisticTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := relaytest.MakeCert(t, dir, "mx1.dest.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.tls = &tls.Config{Certificates: []tls.Certificate{cert}} })
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("tls"), "b@dest.test")
	cfg := testConfig(port)
	_, rec, stop := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	stop()
	msgs := f.messages()
	if len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("messages %+v: want one, over TLS", msgs)
	}
	for _, h := range f.heloNames() {
		if h != cfg.Hostname {
			t.Errorf("peer saw EHLO %q, want %q only (never localhost)", h, cfg.Hostname)
		}
	}

	// tls = "verify" with a certificate we do not trust defers with 4.7.5 ...
	st2 := openStore(t, t.TempDir())
	id := put(t, st2, queue.Envelope{From: ""}, msgBody("verify"), "b@dest.test")
	cfg2 := testConfig(port)
	cfg2.Delivery.TLS = "verify"
	_, rec2, stop2 := run(t, cfg2, st2, resolver(t, dns.Addr()), Options{})
	waitFor(t, "deferral", 10*time.Second, func() bool { return rec2.count(Deferred) >= 1 })
	stop2()
	if r := rec2.list()[0]; dsnField(r) != "4.7.5" {
		t.Errorf("verify with an untrusted certificate: %+v, want 4.7.5", r)
	}
	if len(f.messages()) != 1 {
		t.Errorf("mail went out over an unverified connection with tls=verify")
	}
	// ... and delivers once the certificate is trusted.
	_, rec3, _ := run(t, cfg2, st2, resolver(t, dns.Addr()), Options{RootCAs: pool})
	if err := retryNow(st2, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "verified delivery", 10*time.Second, func() bool { return rec3.count(Sent) == 1 })
}

func retryNow(st *queue.Store, id string) error {
	_, err := st.Retry(queue.Selector{IDs: []string{id}})
	return err
}

func TestDelivery_TLSHandshakeFailureFallsBackToPlaintext(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := relaytest.MakeCert(t, dir, "mx1.dest.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A peer stuck on TLS 1.0: our client (TLS 1.2+) cannot complete the handshake.
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS10, MinVersion: tls.VersionTLS10}
	})
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("fallback"), "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].TLS {
		t.Fatalf("want one plaintext delivery after the failed handshake, got %+v", msgs)
	}
	if rec.list()[0].Attempt != 1 {
		t.Errorf("fallback took another attempt")
	}
}

func TestDelivery_ConnectionReuse(t *testing.T) {
	f, port, dns := fakeMX(t, nil)
	st := openStore(t, t.TempDir())
	const n = 50
	for i := range n {
		put(t, st, queue.Envelope{From: ""}, msgBody("reuse"+strconv.Itoa(i)), "b@dest.test")
	}
	cfg := testConfig(port)
	cfg.Delivery.PerDestination = 3
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "all delivered", 20*time.Second, func() bool { return rec.count(Sent) == n })
	if got := len(f.messages()); got != n {
		t.Errorf("peer got %d messages, want %d", got, n)
	}
	if s := f.sessionCount(); s > 3 {
		t.Errorf("%d sessions for %d messages, want at most per_destination = 3", s, n)
	}
}

func TestDelivery_RoutingRuleChangeAppliesToQueuedMail(t *testing.T) {
	direct, port, dns := fakeMX(t, nil)
	// The smart host defers everything, so the message stays queued under the first configuration.
	sh := startFake(t, "127.0.0.2:0", func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return replyErr4(451, smtp.EnhancedCode{4, 3, 0}, "later") }
	})
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, config.SmarthostNoTLS, nil)}
	cfg.Routing.Rules = []config.Rule{{Domains: []string{"dest.test"}, Via: "smarthost"}}
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("rule"), "b@dest.test")
	s, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "a smart host deferral", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	if r := rec.list()[0]; r.Route != "smarthost" {
		t.Fatalf("first attempt via %s, want smarthost", r.Route)
	}
	cfg2 := *cfg
	cfg2.Routing.Rules = []config.Rule{{Senders: []string{"sender.test"}, Via: "direct"}}
	s.Reload(NewSettings(&cfg2))
	waitFor(t, "direct delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	for _, r := range rec.list() {
		if r.Outcome == Sent && (r.Route != "direct" || r.ID != id) {
			t.Errorf("delivered %+v, want via direct", r)
		}
	}
	if len(direct.messages()) != 1 || len(sh.messages()) != 0 {
		t.Errorf("direct got %d, smart host got %d", len(direct.messages()), len(sh.messages()))
	}
}

func TestDelivery_SmarthostAuth(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pass")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := relaytest.MakeCert(t, dir, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	cases := []struct {
		name    string
		mechs   []string
		tls     *tls.Config
		mode    config.SmarthostTLS
		pass    string
		outcome Outcome
		authed  string
	}{
		{"PLAIN over STARTTLS", nil, tlsCfg, "starttls", "s3cret", Sent, "PLAIN:user"},
		{"LOGIN only (Office 365)", []string{"LOGIN"}, tlsCfg, "starttls", "s3cret", Sent, "LOGIN:user"},
		{"wrong password defers", nil, tlsCfg, "starttls", "wrong", Deferred, ""},
		{"no STARTTLS offered: no credentials in clear", nil, nil, "starttls", "s3cret", Deferred, ""},
		{"tls=none sends credentials as told", nil, nil, "none", "s3cret", Sent, "PLAIN:user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sh := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
				f.authUsers = map[string]string{"user": c.pass}
				f.mechs = c.mechs
				f.tls = c.tls
			})
			st := openStore(t, t.TempDir())
			cfg := testConfig(1)
			cfg.Routing.Mode = "smarthost"
			cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, c.mode, func(h *config.Smarthost) { h.Username, h.PasswordFile = "user", pw })}
			cfg.Queue.RetryMin = config.Duration(time.Minute)
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("auth"), "b@dest.test")
			_, rec, _ := run(t, cfg, st, nil, Options{RootCAs: pool})
			waitFor(t, "an attempt", 10*time.Second, func() bool { return len(rec.list()) >= 1 })
			r := rec.list()[0]
			if r.Outcome != c.outcome || r.Route != "smarthost" {
				t.Fatalf("attempt %+v, want %s via smarthost", r, c.outcome)
			}
			sh.mu.Lock()
			authed := strings.Join(sh.authed, ",")
			sh.mu.Unlock()
			if authed != c.authed {
				t.Errorf("peer saw logins %q, want %q", authed, c.authed)
			}
			if c.outcome == Deferred && rec.count(Bounced) != 0 {
				t.Errorf("a smart host failure bounced mail")
			}
			if c.pass == "wrong" && (r.Status.Code != 535 || dsnField(r) != "4.7.8") {
				t.Errorf("wrong password recorded as %s, want 535 with dsn 4.7.8", replyText(r.Status))
			}
		})
	}
}

// The same, across a restart: the queue is closed and reopened, and a new scheduler with a changed rule obeys it.
func TestDelivery_RuleChangedByRestart(t *testing.T) {
	direct, port, dns := fakeMX(t, nil)
	sh := startFake(t, "127.0.0.2:0", func(f *fakePeer) {
		f.rcptErr = func(int, string) error { return replyErr4(451, smtp.EnhancedCode{4, 3, 0}, "later") }
	})
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := testConfig(port)
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, config.SmarthostNoTLS, nil)}
	cfg.Routing.Mode = "smarthost"
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("restart"), "b@dest.test")
	_, rec, stop := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "a smart host deferral", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := openStore(t, dir)
	cfg2 := *cfg
	cfg2.Routing.Rules = []config.Rule{{Domains: []string{"dest.test"}, Via: "direct"}}
	_, rec2, _ := run(t, &cfg2, st2, resolver(t, dns.Addr()), Options{})
	waitFor(t, "direct delivery after the restart", 10*time.Second, func() bool { return rec2.count(Sent) == 1 })
	if r := rec2.list()[len(rec2.list())-1]; r.Route != "direct" {
		t.Errorf("delivered via %s", r.Route)
	}
	if len(direct.messages()) != 1 {
		t.Errorf("direct MX got %d messages", len(direct.messages()))
	}
}

func TestDelivery_RerouteOnPolicyRefusal(t *testing.T) {
	gmail := func(_ int, to string) error {
		if strings.HasSuffix(to, "@dest.test") {
			return replyErr4(550, smtp.EnhancedCode{5, 7, 25}, "[192.0.2.1] The IP address sending this message does not have a PTR record setup")
		}
		return nil
	}
	for _, reroute := range []bool{true, false} {
		t.Run("reroute="+strconv.FormatBool(reroute), func(t *testing.T) {
			direct, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = gmail })
			sh := startFake(t, "127.0.0.2:0", nil)
			st := openStore(t, t.TempDir())
			cfg := testConfig(port)
			cfg.Routing.Mode = "direct"
			cfg.Routing.Reroute = reroute
			cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, config.SmarthostNoTLS, nil)}
			id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("reroute"), "b@dest.test")
			_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
			if !reroute {
				waitFor(t, "the bounce", 10*time.Second, func() bool { return rec.count(Bounced) == 1 })
				return
			}
			waitFor(t, "delivery via the smart host", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
			got := rec.list()
			if got[0].Outcome != Rerouted || got[0].Route != "direct" || got[1].Route != "smarthost" || got[1].ID != id {
				t.Errorf("attempts %+v, want rerouted (direct) then sent (smarthost)", got)
			}
			if rec.count(Bounced) != 0 || len(direct.messages()) != 0 || len(sh.messages()) != 1 {
				t.Errorf("bounced %d, direct got %d, smart host got %d", rec.count(Bounced), len(direct.messages()), len(sh.messages()))
			}
		})
	}
}

// A refusal for the sender domain's own SPF/DKIM is never rerouted; the DSN names the record to fix.
func TestDelivery_SenderAuthRefusalBouncesWithFix(t *testing.T) {
	refusal := "This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM."
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.rcptErr = func(_ int, to string) error {
			if strings.HasSuffix(to, "@dest.test") {
				return replyErr4(550, smtp.EnhancedCode{5, 7, 26}, refusal)
			}
			return nil
		}
	})
	sh := startFake(t, "127.0.0.2:0", nil)
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Routing.Reroute = true
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, config.SmarthostNoTLS, nil)}
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("spf"), "b@dest.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "the bounce and its DSN", 10*time.Second, func() bool { return rec.count(Bounced) == 1 && len(dsns(f)) == 1 })
	if len(sh.messages()) != 0 || rec.count(Rerouted) != 0 {
		t.Errorf("an SPF/DKIM refusal was rerouted")
	}
	fix := route.Classify(smtpstatus.Status{Code: 550, Enhanced: smtpstatus.Enhanced{5, 7, 26}, Text: refusal}).Fix
	if fix == "" {
		t.Fatal("route.Classify gives no fix for a Gmail SPF/DKIM refusal")
	}
	fix = strings.ReplaceAll(fix, "<sender domain>", "sender.test") // the DSN names the sender's domain
	flat := strings.Join(strings.Fields(string(dsns(f)[0].Data)), " ")
	if !strings.Contains(flat, strings.Join(strings.Fields(fix), " ")) {
		t.Errorf("DSN does not name the fix %q:\n%s", fix, dsns(f)[0].Data)
	}
}

// TestDelivery_VerifyRefusesTLS10 keeps outbound TLS strict whatever the inbound side allows (smtp.tls_legacy
// is an inbound setting only): with delivery.tls = "verify", a peer that speaks only TLS 1.0 is not delivered to,
// even with a trusted certificate, and the attempt defers with a TLS status.
func TestDelivery_VerifyRefusesTLS10(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := relaytest.MakeCert(t, dir, "mx1.dest.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS10, MinVersion: tls.VersionTLS10}
	})
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@src.test"}, msgBody("strict"), "b@dest.test")
	cfg := testConfig(port)
	cfg.Delivery.TLS = "verify"
	cfg.SMTP.TLSLegacy = true
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{RootCAs: pool})
	waitFor(t, "deferred attempt", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	if n := len(f.messages()); n != 0 {
		t.Fatalf("a TLS 1.0-only peer got %d messages with delivery.tls = verify", n)
	}
	got := rec.list()[0]
	if got.Status.Enhanced[0] != 4 || got.Status.Enhanced[1] != 7 {
		t.Errorf("deferred with %s, want a 4.7.x TLS status", got.Status)
	}
}
