package delivery

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/tlspolicy"
)

// TestE2E_DANE: DANE against real DNSSEC. The zones are signed at test time (ldns-signzone) under a test root
// key, and a real unbound validates them with that key as its trust anchor; the MX hosts are go-smtp servers
// with certificates from a test CA. One unbound serves every case:
//
//	ee.test       signed   DANE-EE (3 0 1) of the MX's certificate            delivered, tls=dane
//	eefail.test   signed   DANE-EE of another certificate                     deferred 4.7.5, nothing sent
//	ta.test       signed   DANE-TA (2 0 1) of the CA, chain sent              delivered, tls=dane
//	tafail.test   signed   DANE-TA of the CA, certificate for another name    deferred 4.7.5
//	bogus.test    signed   TLSA changed after signing: SERVFAIL (bogus)       deferred 4.7.5, MX never dialed
//	plain.test    unsigned TLSA that would refuse the certificate            delivered, tls=may (no DANE)
//	both.test     signed   MTA-STS enforce whose PKIX check would fail, TLSA  delivered, tls=dane (DANE wins)
func TestE2E_DANE(t *testing.T) {
	e := newPolicyEnv(t)
	good := e.cert("ee", false, "mx.ee.test")
	other := e.cert("other", false, "unrelated.test")
	chained := e.cert("ta", true, "mx.ta.test")
	wrongChained := e.cert("tafail", true, "mx.elsewhere.test")
	bogusCert := e.cert("bogus", false, "mx.bogus.test")
	hash := func(c []byte) string { return tlsaOf(c) }
	zone := func(name, ip string, signed bool, extra ...string) dnstest.Zone {
		return dnstest.Zone{Name: name + ".", Signed: signed, Records: append([]string{
			name + ". MX 10 mx." + name + ".",
			"mx." + name + ". A " + ip,
		}, extra...)}
	}
	bogus := zone("bogus.test", "127.0.0.85", true, "_25._tcp.mx.bogus.test. TLSA 3 0 1 "+hash(bogusCert.Certificate[0]))
	bogus.Tamper = func(z string) string {
		h := strings.ToLower(hash(bogusCert.Certificate[0]))
		return strings.Replace(z, h, strings.Repeat("0", 8)+h[8:], 1)
	}
	e.dnsAddr = dnstest.StartValidating(t,
		zone("ee.test", "127.0.0.81", true, "_25._tcp.mx.ee.test. TLSA 3 0 1 "+hash(good.Certificate[0])),
		zone("eefail.test", "127.0.0.82", true, "_25._tcp.mx.eefail.test. TLSA 3 0 1 "+hash(good.Certificate[0])),
		zone("ta.test", "127.0.0.83", true, "_25._tcp.mx.ta.test. TLSA 2 0 1 "+hash(e.caDER)),
		zone("tafail.test", "127.0.0.84", true, "_25._tcp.mx.tafail.test. TLSA 2 0 1 "+hash(e.caDER)),
		bogus,
		zone("plain.test", "127.0.0.86", false, "_25._tcp.mx.plain.test. TLSA 3 0 1 "+hash(good.Certificate[0])),
		zone("both.test", "127.0.0.87", true, "_25._tcp.mx.both.test. TLSA 3 0 1 "+hash(other.Certificate[0]),
			`_mta-sts.both.test. TXT "v=STSv1; id=1;"`, "mta-sts.both.test. A 127.0.0.1"),
	)
	e.sts.set("both.test", stsPolicy("enforce", "mx.both.test"), 0)
	// DANE is on because the real resolver proves it validates, not because the test says so.
	e.dane.Set(dnscheck.DNSSECStatus{}, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st := resolver(t, e.dnsAddr).ProbeDNSSEC(ctx, "."); !e.dane.Set(st, time.Now()) || !e.dane.Active() {
		t.Fatalf("the DNSSEC probe of the validating unbound: %+v", st)
	}

	cases := []struct {
		domain, ip string
		cert       []byte // nil: the host's certificate is chosen below
		outcome    Outcome
		enhanced   string
		level      string
		policy     string
		messages   int
		tls        bool
	}{
		{"ee.test", "127.0.0.81", nil, Sent, "", tlspolicy.LevelDANE, "", 1, true},
		{"eefail.test", "127.0.0.82", nil, Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE, 0, false},
		{"ta.test", "127.0.0.83", nil, Sent, "", tlspolicy.LevelDANE, "", 1, true},
		{"tafail.test", "127.0.0.84", nil, Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE, 0, false},
		{"bogus.test", "127.0.0.85", nil, Deferred, "4.7.5", tlspolicy.LevelDANE, tlspolicy.PolicyDANE, 0, false},
		{"plain.test", "127.0.0.86", nil, Sent, "", tlspolicy.LevelMay, "", 1, true},
		{"both.test", "127.0.0.87", nil, Sent, "", tlspolicy.LevelDANE, "", 1, true},
	}
	certs := map[string]*tls.Certificate{"ee.test": &good, "eefail.test": &other, "ta.test": &chained,
		"tafail.test": &wrongChained, "bogus.test": &bogusCert, "plain.test": &other, "both.test": &other}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			mx := e.mx(c.ip, certs[c.domain])
			r := e.attempt(e.config(), "x@"+c.domain)
			want(t, r, c.outcome, c.enhanced, c.level, c.policy)
			if n := len(mx.messages()); n != c.messages {
				t.Errorf("the MX got %d messages, want %d", n, c.messages)
			}
			for _, m := range mx.messages() {
				if m.TLS != c.tls {
					t.Errorf("message over TLS %v, want %v", m.TLS, c.tls)
				}
			}
			if c.domain == "bogus.test" && (mx.sessionCount() != 0 || !strings.Contains(r.Reply(), "SERVFAIL")) {
				t.Errorf("bogus TLSA: %d sessions, reply %q; want no session and the SERVFAIL named", mx.sessionCount(), r.Reply())
			}
		})
	}
	if e.sts.fetches("both.test") != 1 {
		t.Errorf("the MTA-STS policy of both.test was fetched %d times, want 1 (it is looked up, then DANE wins)", e.sts.fetches("both.test"))
	}
}
