package dnscheck_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

// tlsaHex is a SHA-256 association, written in upper case as some zone editors write it.
const tlsaHex = "AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899"

// dnssecZones is the DNSSEC scenario: a signed zone, an unsigned one, and a signed one whose TLSA record was
// changed after signing.
func dnssecZones() []dnstest.Zone {
	return []dnstest.Zone{
		{Name: "secure.test.", Signed: true, Records: []string{
			"secure.test. MX 10 mx.secure.test.",
			"mx.secure.test. A 127.0.0.51",
			"_25._tcp.mx.secure.test. TLSA 3 1 1 " + tlsaHex,
			"alias.secure.test. CNAME mx.secure.test.",
			"nomx.secure.test. A 127.0.0.52",
		}},
		{Name: "insecure.test.", Records: []string{
			"insecure.test. MX 10 mx.insecure.test.",
			"mx.insecure.test. A 127.0.0.53",
			"_25._tcp.mx.insecure.test. TLSA 3 1 1 " + tlsaHex,
		}},
		{Name: "bogus.test.", Signed: true, Records: []string{
			"bogus.test. MX 10 mx.bogus.test.",
			"mx.bogus.test. A 127.0.0.54",
			"_25._tcp.mx.bogus.test. TLSA 3 1 1 " + tlsaHex,
		}, Tamper: func(z string) string {
			return strings.Replace(z, strings.ToLower(tlsaHex), "00"+strings.ToLower(tlsaHex[2:]), 1)
		}},
	}
}

// TestDNSSEC_Validating: against a real validating unbound with zones signed at test time, the resolver tells
// authentic answers (secure zone, its NXDOMAIN, a CNAME inside it) from insecure ones, decodes TLSA data
// whatever the case of its hex, turns a bogus TLSA record into a temporary failure (SERVFAIL, EDE 6), and the
// probe of the signed root finds the resolver validating. dns.trust_ad decides whose AD bit counts.
func TestDNSSEC_Validating(t *testing.T) {
	addr := dnstest.StartValidating(t, dnssecZones()...)
	res := func(trust dnscheck.TrustAD) *dnscheck.Resolver {
		r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{addr}, Timeout: 3 * time.Second, TrustAD: trust})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := res("")
	ctx := ctxT(t)

	mx, err := r.LookupMXDNSSEC(ctx, "secure.test")
	if err != nil || !mx.Authentic || len(mx.MX) != 1 || mx.MX[0].Host != "mx.secure.test" {
		t.Errorf("MX secure.test = %+v, %v; want mx.secure.test, authentic", mx, err)
	}
	mx, err = r.LookupMXDNSSEC(ctx, "insecure.test")
	if err != nil || mx.Authentic || len(mx.MX) != 1 {
		t.Errorf("MX insecure.test = %+v, %v; want one, not authentic", mx, err)
	}
	mx, err = r.LookupMXDNSSEC(ctx, "nomx.secure.test")
	if err != nil || !mx.Authentic || !mx.MX[0].Implicit {
		t.Errorf("MX nomx.secure.test = %+v, %v; want the implicit MX, authentic (signed NODATA)", mx, err)
	}

	addrs, err := r.LookupAddrsDNSSEC(ctx, "mx.secure.test")
	if err != nil || !addrs.Authentic || len(addrs.Addrs) != 1 || addrs.Canonical != "" {
		t.Errorf("addrs mx.secure.test = %+v, %v; want one, authentic (A and the signed AAAA NODATA)", addrs, err)
	}
	addrs, err = r.LookupAddrsDNSSEC(ctx, "alias.secure.test")
	if err != nil || !addrs.Authentic || addrs.Canonical != "mx.secure.test" {
		t.Errorf("addrs alias.secure.test = %+v, %v; want authentic through the CNAME, canonical mx.secure.test", addrs, err)
	}
	addrs, err = r.LookupAddrsDNSSEC(ctx, "mx.insecure.test")
	if err != nil || addrs.Authentic {
		t.Errorf("addrs mx.insecure.test = %+v, %v; want not authentic", addrs, err)
	}

	tl, err := r.LookupTLSA(ctx, "mx.secure.test", 25)
	if err != nil || !tl.Authentic || len(tl.Records) != 1 {
		t.Fatalf("TLSA mx.secure.test = %+v, %v; want one record, authentic", tl, err)
	}
	if rec := tl.Records[0]; rec.Usage != 3 || rec.Selector != 1 || rec.MatchingType != 1 || len(rec.Data) != 32 || rec.Data[0] != 0xAA {
		t.Errorf("TLSA record %s: want 3 1 1 with 32 decoded bytes starting AA", rec)
	}
	tl, err = r.LookupTLSA(ctx, "nomx.secure.test", 25)
	if err != nil || !tl.Authentic || len(tl.Records) != 0 {
		t.Errorf("TLSA of a name without any = %+v, %v; want none, authentic denial", tl, err)
	}
	tl, err = r.LookupTLSA(ctx, "mx.insecure.test", 25)
	if err != nil || tl.Authentic || len(tl.Records) != 1 {
		t.Errorf("TLSA mx.insecure.test = %+v, %v; want the record, not authentic", tl, err)
	}
	_, err = r.LookupTLSA(ctx, "mx.bogus.test", 25)
	if !errors.Is(err, dnscheck.ErrTemporary) || !strings.Contains(err.Error(), "EDE 6") {
		t.Errorf("TLSA of a tampered record: %v; want a temporary failure naming EDE 6 (DNSSEC Bogus)", err)
	}
	if a, err := r.LookupA(ctx, "mx.bogus.test"); err != nil || len(a) != 1 {
		t.Errorf("A mx.bogus.test (untouched, still valid) = %v, %v", a, err)
	}

	if st := r.ProbeDNSSEC(ctx, "."); !st.Validating {
		t.Errorf("probe: %+v; want validating", st)
	}
	// The same unbound, whose AD bit does not count.
	never := res(dnscheck.TrustNever)
	if mx, err := never.LookupMXDNSSEC(ctx, "secure.test"); err != nil || mx.Authentic {
		t.Errorf("trust_ad = never: MX = %+v, %v; want not authentic", mx, err)
	}
	if st := never.ProbeDNSSEC(ctx, "."); st.Validating || !strings.Contains(st.Detail, "never") || st.Fix == "" {
		t.Errorf("trust_ad = never: probe %+v; want off, saying why, with a fix", st)
	}
	if st := res(dnscheck.TrustAlways).ProbeDNSSEC(ctx, "."); !st.Validating {
		t.Errorf("trust_ad = always: probe %+v; want validating", st)
	}
}

// TestDNSSEC_NotValidating: a resolver that does not validate (unbound with the iterator only) never gives
// authentic answers, and the probe says so with the unbound lines that fix it.
func TestDNSSEC_NotValidating(t *testing.T) {
	addr := dnstest.StartUnbound(t, "plain.test. MX 10 mx.plain.test.", ". NS a.root-servers.net.")
	r := newResolver(t, addr)
	ctx := ctxT(t)
	if mx, err := r.LookupMXDNSSEC(ctx, "plain.test"); err != nil || mx.Authentic {
		t.Errorf("MX = %+v, %v; want not authentic", mx, err)
	}
	st := r.ProbeDNSSEC(ctx, ".")
	if st.Validating || !strings.Contains(st.Detail, "does not validate") || !strings.Contains(st.Fix, "unbound") {
		t.Errorf("probe = %+v; want not validating, with the unbound fix", st)
	}
}

// TestDNSSEC_TrustLoopback: the AD bit of a resolver that is not on this machine does not count under the
// default dns.trust_ad, and counts under "always"; the in-process server marks its secure zone.
func TestDNSSEC_TrustLoopback(t *testing.T) {
	srv := dnstest.New(t, "a.test. MX 10 mx.a.test.", "mx.a.test. A 127.0.0.9", ". NS x.test.")
	srv.Secure(".")
	ctx := ctxT(t)
	for _, c := range []struct {
		trust     dnscheck.TrustAD
		authentic bool
	}{{"", true}, {dnscheck.TrustLoopback, true}, {dnscheck.TrustAlways, true}, {dnscheck.TrustNever, false}} {
		r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{srv.Addr()}, TrustAD: c.trust})
		if err != nil {
			t.Fatal(err)
		}
		if mx, err := r.LookupMXDNSSEC(ctx, "a.test"); err != nil || mx.Authentic != c.authentic {
			t.Errorf("trust %q: MX = %+v, %v; want authentic %v", c.trust, mx, err, c.authentic)
		}
	}
	// Every query asks with AD (RFC 6840 5.7) and without DO, so answers carry no RRSIGs.
	for _, q := range srv.Queries() {
		if q.Type == dns.TypeMX && q.Name != "a.test." {
			t.Errorf("unexpected query %+v", q)
		}
	}
	if _, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{srv.Addr()}, TrustAD: "sometimes"}); err == nil {
		t.Error("a bad trust_ad word was accepted")
	}
}

// TestDNSSEC_UntrustedServer: the probe of a resolver elsewhere (here a documentation address that never
// answers) says it is not on this machine without asking it.
func TestDNSSEC_UntrustedServer(t *testing.T) {
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{"192.0.2.1:53"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := r.ProbeDNSSEC(ctxT(t), ".")
	if st.Validating || st.Temporary || !strings.Contains(st.Detail, "no resolver in use (192.0.2.1:53) is on this machine") {
		t.Errorf("probe = %+v; want off because the resolver is not on loopback", st)
	}
}
