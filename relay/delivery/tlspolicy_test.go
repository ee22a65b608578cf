package delivery

import (
	"crypto/tls"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/tlspolicy"
)

// attempt queues one message to rcpt, runs a scheduler with the policy engine until the first attempt, and
// returns it.
func (e *policyEnv) attempt(cfg *config.Config, rcpt string) Result {
	e.t.Helper()
	st := openStore(e.t, e.t.TempDir())
	put(e.t, st, queue.Envelope{From: "a@sender.test"}, msgBody("policy"), rcpt)
	_, rec, stop := e.run(cfg, st)
	waitFor(e.t, "an attempt", 15*time.Second, func() bool { return len(rec.list()) >= 1 })
	stop()
	return rec.list()[0]
}

// want checks an attempt's outcome, enhanced code, tls= level and the policy that deferred it.
func want(t *testing.T, r Result, outcome Outcome, enhanced, level, policy string) {
	t.Helper()
	if r.Outcome != outcome || (enhanced != "" && dsnField(r) != enhanced) || r.TLS != level || r.Policy != policy {
		t.Errorf("attempt: %s %s tls=%q policy=%q (%s); want %s %s tls=%q policy=%q", r.Outcome, dsnField(r), r.TLS,
			r.Policy, r.Reply(), outcome, enhanced, level, policy)
	}
	if policy != "" && !strings.Contains(r.Status.Text, policy) {
		t.Errorf("the deferral does not name the policy %s: %s", policy, r.Reply())
	}
}

// received checks what an MX host got: sessions, messages, and that each message came over TLS when tls.
// go-smtp starts a new session after STARTTLS, so a connection that negotiated TLS counts two.
func received(t *testing.T, name string, f *fakePeer, sessions, messages int, tls bool) {
	t.Helper()
	if got := f.sessionCount(); got != sessions {
		t.Errorf("%s: %d sessions, want %d", name, got, sessions)
	}
	msgs := f.messages()
	if len(msgs) != messages {
		t.Errorf("%s: %d messages, want %d", name, len(msgs), messages)
	}
	for _, m := range msgs {
		if m.TLS != tls {
			t.Errorf("%s: a message came with TLS %v, want %v", name, m.TLS, tls)
		}
	}
}

// TestTLSPolicy_DANE: DANE (RFC 7672) with authentic answers from a validating resolver: DANE-EE and DANE-TA
// records accept the certificate they name and refuse others (never in clear); a TLSA lookup that fails
// (bogus) makes that host unusable and the next MX takes the mail; secure but unusable records require TLS
// without checking the certificate; an insecure MX RRset means no DANE at all; DANE wins over an MTA-STS policy
// whose PKIX check would fail.
func TestTLSPolicy_DANE(t *testing.T) {
	e := newPolicyEnv(t)
	good := e.cert("ee", false, "mx.ee.test")
	other := e.cert("other", false, "unrelated.test")
	chained := e.cert("ta", true, "mx.ta.test")
	wrongChained := e.cert("tabad", true, "mx.elsewhere.test")
	tlsa := func(host, rec string) { e.dns.Add("_25._tcp." + host + ". TLSA " + rec) }

	t.Run("EE match", func(t *testing.T) {
		mx := e.mx("127.0.0.31", &good)
		e.domain("ee.test", true, "mx.ee.test", "127.0.0.31")
		tlsa("mx.ee.test", "3 0 1 "+tlsaOf(good.Certificate[0]))
		want(t, e.attempt(e.config(), "x@ee.test"), Sent, "", tlspolicy.LevelDANE, "")
		received(t, "mx", mx, 2, 1, true)
		if e.reported("ee.test", tlspolicy.Success) != 1 {
			t.Error("the DANE session was not counted as a TLS-RPT success")
		}
	})
	t.Run("EE mismatch", func(t *testing.T) {
		mx := e.mx("127.0.0.32", &other)
		e.domain("eebad.test", true, "mx.eebad.test", "127.0.0.32")
		tlsa("mx.eebad.test", "3 0 1 "+tlsaOf(good.Certificate[0]))
		want(t, e.attempt(e.config(), "x@eebad.test"), Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE)
		received(t, "mx", mx, 1, 0, false)
		if e.reported("eebad.test", "validation-failure") != 1 {
			t.Error("the mismatch was not counted as a TLS-RPT validation-failure")
		}
	})
	t.Run("TA chain", func(t *testing.T) {
		mx := e.mx("127.0.0.33", &chained)
		e.domain("ta.test", true, "mx.ta.test", "127.0.0.33")
		tlsa("mx.ta.test", "2 0 1 "+tlsaOf(e.caDER))
		want(t, e.attempt(e.config(), "x@ta.test"), Sent, "", tlspolicy.LevelDANE, "")
		received(t, "mx", mx, 2, 1, true)
	})
	t.Run("TA wrong name", func(t *testing.T) {
		mx := e.mx("127.0.0.34", &wrongChained)
		e.domain("tabad.test", true, "mx.tabad.test", "127.0.0.34")
		tlsa("mx.tabad.test", "2 0 1 "+tlsaOf(e.caDER))
		want(t, e.attempt(e.config(), "x@tabad.test"), Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE)
		received(t, "mx", mx, 1, 0, false)
		if e.reported("tabad.test", "certificate-host-mismatch") != 1 {
			t.Error("not counted as certificate-host-mismatch")
		}
	})
	t.Run("TLSA bogus, next MX", func(t *testing.T) {
		mx1 := e.mx("127.0.0.35", &good)
		mx2 := e.mx("127.0.0.36", nil)
		e.domain("bogus.test", true, "mx1.bogus.test", "127.0.0.35", "mx2.bogus.test", "127.0.0.36")
		e.dns.Fail("_25._tcp.mx1.bogus.test", dns.TypeTLSA, dnstest.Bogus)
		want(t, e.attempt(e.config(), "x@bogus.test"), Sent, "", tlspolicy.LevelMay, "")
		received(t, "mx1 (bogus TLSA)", mx1, 0, 0, false)
		received(t, "mx2 (no TLSA)", mx2, 1, 1, false)
	})
	t.Run("TLSA bogus, only MX", func(t *testing.T) {
		mx := e.mx("127.0.0.37", &good)
		e.domain("bogus1.test", true, "mx.bogus1.test", "127.0.0.37")
		e.dns.Fail("_25._tcp.mx.bogus1.test", dns.TypeTLSA, dnstest.Bogus)
		r := e.attempt(e.config(), "x@bogus1.test")
		want(t, r, Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE)
		received(t, "mx", mx, 0, 0, false)
		if !strings.Contains(r.Reply(), "EDE 6") || e.reported("bogus1.test", "dnssec-invalid") != 1 {
			t.Errorf("deferral %q: want the resolver's EDE and a TLS-RPT dnssec-invalid", r.Reply())
		}
	})
	t.Run("unusable records: TLS, unverified", func(t *testing.T) {
		mx := e.mx("127.0.0.38", &other)
		e.domain("unusable.test", true, "mx.unusable.test", "127.0.0.38")
		tlsa("mx.unusable.test", "1 0 1 "+tlsaOf(good.Certificate[0])) // PKIX-EE: not for SMTP
		want(t, e.attempt(e.config(), "x@unusable.test"), Sent, "", tlspolicy.LevelEncrypt, "")
		received(t, "mx", mx, 2, 1, true)
	})
	t.Run("unusable records, no STARTTLS", func(t *testing.T) {
		mx := e.mx("127.0.0.39", nil)
		e.domain("unusable2.test", true, "mx.unusable2.test", "127.0.0.39")
		tlsa("mx.unusable2.test", "1 0 1 "+tlsaOf(good.Certificate[0]))
		want(t, e.attempt(e.config(), "x@unusable2.test"), Deferred, "4.7.4", tlspolicy.LevelEncrypt, tlspolicy.PolicyDANE)
		received(t, "mx", mx, 1, 0, false)
	})
	t.Run("insecure MX: no DANE", func(t *testing.T) {
		mx := e.mx("127.0.0.40", &other)
		e.dns.Add("insecure.test. MX 10 mx.hosts.test.", "mx.hosts.test. A 127.0.0.40")
		e.dns.Secure("hosts.test")
		tlsa("mx.hosts.test", "3 0 1 "+tlsaOf(good.Certificate[0])) // would refuse the certificate
		want(t, e.attempt(e.config(), "x@insecure.test"), Sent, "", tlspolicy.LevelMay, "")
		received(t, "mx", mx, 2, 1, true)
		for _, q := range e.dns.Queries() {
			if q.Type == dns.TypeTLSA && q.Name == "_25._tcp.mx.hosts.test." {
				t.Error("TLSA was asked for a host whose MX RRset is not authentic")
			}
		}
	})
	t.Run("DANE beats MTA-STS", func(t *testing.T) {
		mx := e.mx("127.0.0.41", &other) // PKIX for mx.both.test would fail: the certificate names another host
		e.domain("both.test", true, "mx.both.test", "127.0.0.41")
		tlsa("mx.both.test", "3 0 1 "+tlsaOf(other.Certificate[0]))
		e.publishSTS("both.test", "1", stsPolicy("enforce", "mx.both.test"))
		want(t, e.attempt(e.config(), "x@both.test"), Sent, "", tlspolicy.LevelDANE, "")
		received(t, "mx", mx, 2, 1, true)
	})
	t.Run("dane-only without TLSA", func(t *testing.T) {
		mx := e.mx("127.0.0.42", &good)
		e.domain("daneonly.test", true, "mx.daneonly.test", "127.0.0.42")
		cfg := e.config()
		cfg.Delivery.TLSPolicy = []config.TLSPolicyRule{{Domains: []string{"daneonly.test"}, Level: config.TLSLevelDANEOnly}}
		want(t, e.attempt(cfg, "x@daneonly.test"), Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE)
		received(t, "mx", mx, 0, 0, false)
	})
}

// TestTLSPolicy_DANEOff: with a resolver that does not validate (DANE off), TLSA records are not even asked
// for and mail goes as delivery.tls says.
func TestTLSPolicy_DANEOff(t *testing.T) {
	e := newPolicyEnv(t)
	e.dane.Set(dnscheck.DNSSECStatus{Detail: "does not validate"}, time.Now())
	good := e.cert("ee", false, "mx.off.test")
	other := e.cert("other", false, "unrelated.test")
	mx := e.mx("127.0.0.43", &other)
	e.domain("off.test", true, "mx.off.test", "127.0.0.43")
	e.dns.Add("_25._tcp.mx.off.test. TLSA 3 0 1 " + tlsaOf(good.Certificate[0]))
	want(t, e.attempt(e.config(), "x@off.test"), Sent, "", tlspolicy.LevelMay, "")
	received(t, "mx", mx, 2, 1, true)
	for _, q := range e.dns.Queries() {
		if q.Type == dns.TypeTLSA {
			t.Errorf("TLSA asked with DANE off: %+v", q)
		}
	}
}

// TestTLSPolicy_MTASTS: a policy fetched over HTTPS (the test CA's certificate for mta-sts.<domain>):
// enforce skips MX hosts it does not list and defers when none is left; requires STARTTLS (never plaintext) and
// a certificate valid for the MX name; testing delivers as before and reports; an override in Postfix's words
// replaces the policy.
func TestTLSPolicy_MTASTS(t *testing.T) {
	e := newPolicyEnv(t)
	cases := []struct {
		name, domain string
		policy       string
		hosts        []string // name, ip, cert name ("" : no STARTTLS), ...
		override     config.TLSLevel
		outcome      Outcome
		enhanced     string
		level        string
		policyName   string
		got          []int // messages per host
		sessions     []int
	}{
		{"enforce: unlisted host skipped", "sts1.test", stsPolicy("enforce", "mx2.sts1.test"),
			[]string{"mx1.sts1.test", "127.0.0.51", "", "mx2.sts1.test", "127.0.0.52", "mx2.sts1.test"},
			"", Sent, "", tlspolicy.LevelMTASTS, "", []int{0, 1}, []int{0, 2}},
		{"enforce: wildcard of one label", "sts2.test", stsPolicy("enforce", "*.sts2.test"),
			[]string{"mx.sts2.test", "127.0.0.53", "mx.sts2.test"},
			"", Sent, "", tlspolicy.LevelMTASTS, "", []int{1}, []int{2}},
		{"enforce: no host listed", "sts3.test", stsPolicy("enforce", "mx.elsewhere.test"),
			[]string{"mx.sts3.test", "127.0.0.54", "mx.sts3.test"},
			"", Deferred, "4.7.0", tlspolicy.LevelMTASTS, tlspolicy.PolicyMTASTS, []int{0}, []int{0}},
		{"enforce: no STARTTLS", "sts4.test", stsPolicy("enforce", "mx.sts4.test"),
			[]string{"mx.sts4.test", "127.0.0.55", ""},
			"", Deferred, "4.7.4", tlspolicy.LevelMTASTS, tlspolicy.PolicyMTASTS, []int{0}, []int{1}},
		{"enforce: certificate for another name", "sts5.test", stsPolicy("enforce", "mx.sts5.test"),
			[]string{"mx.sts5.test", "127.0.0.56", "unrelated.test"},
			"", Deferred, "4.7.5", tlspolicy.LevelMTASTS, tlspolicy.PolicyMTASTS, []int{0}, []int{1}},
		{"testing: delivered as before", "sts6.test", stsPolicy("testing", "mx.elsewhere.test"),
			[]string{"mx.sts6.test", "127.0.0.57", ""},
			"", Sent, "", tlspolicy.LevelMay, "", []int{1}, []int{1}},
		{"testing: listed host without STARTTLS", "sts9.test", stsPolicy("testing", "mx.sts9.test"),
			[]string{"mx.sts9.test", "127.0.0.60", ""},
			"", Sent, "", tlspolicy.LevelMay, "", []int{1}, []int{1}},
		{"override may", "sts7.test", stsPolicy("enforce", "mx.elsewhere.test"),
			[]string{"mx.sts7.test", "127.0.0.58", ""},
			config.TLSLevelMay, Sent, "", tlspolicy.LevelMay, "", []int{1}, []int{1}},
		{"override verify", "sts8.test", "",
			[]string{"mx.sts8.test", "127.0.0.59", "unrelated.test"},
			config.TLSLevelVerify, Deferred, "4.7.5", tlspolicy.LevelVerify, "", []int{0}, []int{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var peers []*fakePeer
			for i := 0; i < len(c.hosts); i += 3 {
				var cert *tls.Certificate
				if c.hosts[i+2] != "" {
					cc := e.cert(c.domain+c.hosts[i], false, c.hosts[i+2])
					cert = &cc
				}
				peers = append(peers, e.mx(c.hosts[i+1], cert))
				e.domain(c.domain, false, c.hosts[i], c.hosts[i+1])
			}
			if c.policy != "" {
				e.publishSTS(c.domain, "20260301", c.policy)
			}
			cfg := e.config()
			if c.override != "" {
				cfg.Delivery.TLSPolicy = []config.TLSPolicyRule{{Domains: []string{c.domain}, Level: c.override}}
			}
			want(t, e.attempt(cfg, "x@"+c.domain), c.outcome, c.enhanced, c.level, c.policyName)
			for i, p := range peers {
				if n := p.sessionCount(); n != c.sessions[i] {
					t.Errorf("MX %d: %d sessions, want %d", i+1, n, c.sessions[i])
				}
				if n := len(p.messages()); n != c.got[i] {
					t.Errorf("MX %d: %d messages, want %d", i+1, n, c.got[i])
				}
			}
			if c.override != "" && e.sts.fetches(c.domain) != 0 {
				t.Error("the policy was fetched although an override decides")
			}
		})
	}
	if e.reported("sts6.test", "validation-failure") != 1 || e.reported("sts9.test", "starttls-not-supported") != 1 {
		t.Errorf("testing mode did not report what enforce would have refused: %+v", e.sessions)
	}
}

// TestTLSPolicy_FetchFailures: a domain whose policy cannot be fetched (404, 500, a redirect, no answer) gets
// its mail as if it had no policy, and the failed fetch is not repeated for the next message within the
// backoff.
func TestTLSPolicy_FetchFailures(t *testing.T) {
	e := newPolicyEnv(t)
	cases := []struct {
		domain string
		status int
		ip     string
	}{{"f404.test", http.StatusNotFound, "127.0.0.61"}, {"f500.test", http.StatusInternalServerError, "127.0.0.62"},
		{"fredirect.test", http.StatusFound, "127.0.0.63"}, {"fstall.test", stall, "127.0.0.64"}}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			mx := e.mx(c.ip, nil)
			e.domain(c.domain, false, "mx."+c.domain, c.ip)
			e.publishSTS(c.domain, "1", "")
			e.sts.set(c.domain, "", c.status)
			st := openStore(t, t.TempDir())
			_, rec, stop := e.run(e.config(), st)
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("one"), "x@"+c.domain)
			waitFor(t, "the first delivery", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("two"), "y@"+c.domain)
			waitFor(t, "the second delivery", 15*time.Second, func() bool { return rec.count(Sent) == 2 })
			stop()
			for _, r := range rec.list() {
				want(t, r, Sent, "", tlspolicy.LevelMay, "")
			}
			received(t, "mx", mx, mx.sessionCount(), 2, false)
			if n := e.sts.fetches(c.domain); n != 1 {
				t.Errorf("%d fetches for two messages, want 1 (5-minute backoff)", n)
			}
		})
	}
}

// TestTLSPolicy_NeverRerouted: a deferral by a recipient's policy is a TLS problem, not this host's reputation:
// with a smart host configured and routing.reroute on, it still waits in the queue and never goes through the
// smart host. A domain routed through the smart host by a rule never has its MTA-STS record asked for.
func TestTLSPolicy_NeverRerouted(t *testing.T) {
	e := newPolicyEnv(t)
	sh := startFake(t, "127.0.0.70:0", nil)
	mx := e.mx("127.0.0.71", nil)
	e.domain("keep.test", false, "mx.keep.test", "127.0.0.71")
	e.publishSTS("keep.test", "1", stsPolicy("enforce", "mx.keep.test")) // listed, but offers no STARTTLS
	e.domain("viash.test", false, "mx.viash.test", "127.0.0.71")
	e.publishSTS("viash.test", "1", stsPolicy("enforce", "mx.elsewhere.test"))

	cfg := e.config()
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(sh.addr, config.SmarthostNoTLS, nil)}
	cfg.Routing.Mode = config.RoutingDirect
	cfg.Routing.Reroute = true
	cfg.Routing.Rules = []config.Rule{{Domains: []string{"viash.test"}, Via: config.ViaSmarthost}}
	want(t, e.attempt(cfg, "x@keep.test"), Deferred, "4.7.4", tlspolicy.LevelMTASTS, tlspolicy.PolicyMTASTS)
	if len(sh.messages()) != 0 || len(mx.messages()) != 0 {
		t.Errorf("the deferred mail went somewhere: smart host %d, MX %d", len(sh.messages()), len(mx.messages()))
	}

	r := e.attempt(cfg, "x@viash.test")
	if r.Outcome != Sent || r.Route != "smarthost" || len(sh.messages()) != 1 {
		t.Errorf("attempt %+v; want sent through the smart host", r)
	}
	for _, q := range e.dns.Queries() {
		if q.Name == "_mta-sts.viash.test." {
			t.Error("the MTA-STS record of a domain routed through the smart host was looked up")
		}
	}
	if e.sts.fetches("viash.test") != 0 {
		t.Error("the policy of a domain routed through the smart host was fetched")
	}
}

// TestTLSPolicy_CacheAcrossMessages: a policy held survives an outage of its HTTPS server (mail keeps going out
// under it), and a new id in the TXT record, seen at the hourly look, brings the new policy.
func TestTLSPolicy_CacheAcrossMessages(t *testing.T) {
	e := newPolicyEnv(t)
	cert := e.cert("mx", false, "mx.cached.test")
	mx := e.mx("127.0.0.72", &cert)
	e.domain("cached.test", false, "mx.cached.test", "127.0.0.72")
	e.publishSTS("cached.test", "1", stsPolicy("enforce", "mx.cached.test"))
	// A scheduler per message, sharing the engine and its cache: a session kept open for more mail would carry
	// the next message under the policy it was opened with, without a new look.
	send := func(subject string) Result {
		t.Helper()
		return e.attempt(e.config(), "x@cached.test")
	}
	want(t, send("first"), Sent, "", tlspolicy.LevelMTASTS, "")

	// The policy server fails and the id changes: the held policy still applies.
	e.sts.set("cached.test", "", http.StatusInternalServerError)
	e.dns.Remove("_mta-sts.cached.test", 0)
	e.dns.Add(`_mta-sts.cached.test. TXT "v=STSv1; id=2;"`)
	e.clock.Advance(61 * time.Minute)
	want(t, send("outage"), Sent, "", tlspolicy.LevelMTASTS, "")
	if n := e.sts.fetches("cached.test"); n != 2 {
		t.Errorf("%d fetches; want 2 (the first, and one for the new id)", n)
	}

	// The server is back with the new policy, which no longer lists the host: seen at the next hourly look.
	e.sts.set("cached.test", stsPolicy("enforce", "mx2.cached.test"), 0)
	e.clock.Advance(61 * time.Minute)
	want(t, send("new policy"), Deferred, "4.7.0", tlspolicy.LevelMTASTS, tlspolicy.PolicyMTASTS)
	if n := len(mx.messages()); n != 2 {
		t.Errorf("the MX got %d messages, want 2", n)
	}
}

// TestTLSPolicy_RefetchBeforeBounce: a recipient that an MTA-STS policy kept back until queue.lifetime is not
// bounced before a new policy was looked for (RFC 8461 5.1). A new id brings a policy under which the mail
// goes out (one more attempt); the same id means the bounce, whose DSN names the policy.
func TestTLSPolicy_RefetchBeforeBounce(t *testing.T) {
	for _, newPolicy := range []bool{true, false} {
		name := map[bool]string{true: "new policy", false: "same policy"}[newPolicy]
		t.Run(name, func(t *testing.T) {
			e := newPolicyEnv(t)
			ip := map[bool]string{true: "127.0.0.73", false: "127.0.0.74"}[newPolicy]
			cert := e.cert("mx", false, "mx.late.test")
			mx := e.mx(ip, &cert)
			e.domain("late.test", false, "mx.late.test", ip)
			e.publishSTS("late.test", "1", stsPolicy("enforce", "mx.old.test"))
			e.domain("sender.test", false, "mx.sender.test", "127.0.0.75") // nobody listens: the DSN waits in the queue
			// The message arrived a minute short of queue.lifetime (a day); the scheduler's clock passes it
			// while the first attempt fetches the policy.
			var offset atomic.Int64
			now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			e.sts.after = func(domain string, n int) {
				if n != 1 {
					return
				}
				offset.Store(int64(2 * time.Minute))
				if newPolicy {
					e.dns.Remove("_mta-sts.late.test", dns.TypeTXT)
					e.dns.Add(`_mta-sts.late.test. TXT "v=STSv1; id=2;"`)
					e.sts.set("late.test", stsPolicy("enforce", "mx.late.test"), 0)
				}
			}
			st := openStore(t, t.TempDir())
			id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("late"), "x@late.test")
			if err := st.Update(id, func(m *queue.Message, _ *queue.Tx) error {
				m.Arrival = m.Arrival.Add(-24*time.Hour + time.Minute)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			res := resolver(t, e.dns.Addr())
			eng := e.engine(res)
			_, rec, stop := runWith(t, e.config(), st, res, Options{Now: now}, func(s *Scheduler) { s.tlsEngine = eng })
			waitFor(t, "the outcome", 15*time.Second, func() bool { return rec.count(Sent)+rec.count(Expired) >= 1 })
			stop()
			l := rec.list()
			if newPolicy {
				if len(l) != 2 || l[0].Outcome != Deferred || l[0].Policy != tlspolicy.PolicyMTASTS {
					t.Fatalf("attempts %+v; want the policy's deferral, then the delivery under the new policy", l)
				}
				want(t, l[1], Sent, "", tlspolicy.LevelMTASTS, "")
				if len(mx.messages()) != 1 || e.sts.fetches("late.test") != 2 {
					t.Errorf("MX got %d messages, %d fetches; want 1 and 2", len(mx.messages()), e.sts.fetches("late.test"))
				}
				return
			}
			if l[0].Outcome != Expired || !strings.Contains(l[0].Reply(), "MTA-STS policy of late.test") {
				t.Fatalf("attempt %s %s; want expired, naming the policy", l[0].Outcome, l[0].Reply())
			}
			if len(mx.messages()) != 0 || e.sts.fetches("late.test") != 1 {
				t.Errorf("MX got %d messages, %d fetches; want none and 1 (the TXT record showed the same id)",
					len(mx.messages()), e.sts.fetches("late.test"))
			}
			// The bounce's DSN names the policy.
			var dsnBody string
			waitFor(t, "the DSN", 5*time.Second, func() bool {
				msgs, err := st.List()
				if err != nil || len(msgs) != 1 || !msgs[0].Envelope.IsDSN {
					return false
				}
				dsnBody = readBody(t, st, msgs[0].ID)
				return true
			})
			if !strings.Contains(strings.Join(strings.Fields(dsnBody), " "), "MTA-STS policy of late.test (enforce, id 1) does not list MX host mx.late.test") {
				t.Errorf("the DSN does not name the policy:\n%s", dsnBody)
			}
		})
	}
}
