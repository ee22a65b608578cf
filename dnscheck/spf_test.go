package dnscheck_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/relaytest"
)

func spfZone() []string {
	z := []string{
		`ip.test. TXT "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ip6:2001:db8::/32 -all"`,
		`soft.test. TXT "v=spf1 ip4:192.0.2.1 ~all"`,
		`neutral.test. TXT "v=spf1 ?all"`,
		`noall.test. TXT "v=spf1 ip4:192.0.2.1"`,
		`plus.test. TXT "v=spf1 +ip4:192.0.2.1 -ip4:192.0.2.2 +all"`,
		`inc.test. TXT "v=spf1 include:ip.test include:soft.test -all"`,
		`incmissing.test. TXT "v=spf1 include:missing.test -all"`,
		`incbroken.test. TXT "v=spf1 include:broken.test -all"`,
		`broken.test. TXT "v=spf1 bogus:x -all"`,
		`inctemp.test. TXT "v=spf1 include:temp.test -all"`,
		`a.test. TXT "v=spf1 a a:host.a.test/24 a:v6.a.test//64 -all"`,
		`a.test. A 203.0.113.10`,
		`host.a.test. A 198.51.100.20`,
		`v6.a.test. AAAA 2001:db8:1:2::1`,
		`mx.test. TXT "v=spf1 mx mx:other.test/30 -all"`,
		`mx.test. MX 10 mx1.mx.test.`,
		`mx.test. MX 20 mx2.mx.test.`,
		`mx1.mx.test. A 203.0.113.21`,
		`mx2.mx.test. A 203.0.113.22`,
		`other.test. MX 10 mx.other.test.`,
		`mx.other.test. A 203.0.113.40`,
		`nomx.test. TXT "v=spf1 mx -all"`,
		`nomx.test. A 203.0.113.50`,
		`redir.test. TXT "v=spf1 ip4:192.0.2.99 redirect=ip.test"`,
		`redirnone.test. TXT "v=spf1 redirect=nothing.test"`,
		`nothing.test. A 192.0.2.200`,
		`exists.test. TXT "v=spf1 exists:%{ir}.%{v}.wl.exists.test -all"`,
		`5.2.0.192.in-addr.wl.exists.test. A 127.0.0.2`,
		`ptr.test. TXT "v=spf1 ptr -all"`,
		`9.2.0.192.in-addr.arpa. PTR mail.ptr.test.`,
		`mail.ptr.test. A 192.0.2.9`,
		`two.test. TXT "v=spf1 -all"`,
		`two.test. TXT "v=spf1 +all"`,
		`notspf.test. TXT "v=spf10 +all"`,
		`notspf.test. TXT "google-site-verification=abc"`,
		`void.test. TXT "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"`,
		`split.test. TXT "v=spf1 ip4:192.0.2.1 " "-all"`,
		`exp.test. TXT "v=spf1 exp=explain.exp.test -all"`,
		`allarg.test. TXT "v=spf1 all:x"`,
		`macro.test. TXT "v=spf1 include:%{d2}.spf.example -all"`,
		`macro.test.spf.example. TXT "v=spf1 ip4:192.0.2.77 -all"`,
	}
	// deep0 -> deep1 -> ... -> deep11: more than 10 includes.
	for i := range 12 {
		z = append(z, fmt.Sprintf(`deep%d.test. TXT "v=spf1 include:deep%d.test -all"`, i, i+1))
	}
	z = append(z, `deep12.test. TXT "v=spf1 +all"`)
	// ten0 has exactly 10 lookups (9 includes + the final a), the limit allows it.
	for i := range 9 {
		z = append(z, fmt.Sprintf(`ten%d.test. TXT "v=spf1 include:ten%d.test -all"`, i, i+1))
	}
	z = append(z, `ten9.test. TXT "v=spf1 a:a.test -all"`)
	return z
}

func TestEvaluateSPF(t *testing.T) {
	srv := dnstest.New(t, spfZone()...)
	srv.Fail("temp.test", dns.TypeTXT, dnstest.ServFail)
	r := newResolver(t, srv.Addr())
	cases := []struct {
		domain, ip string
		want       dnscheck.SPFResult
		matched    string
	}{
		{"ip.test", "192.0.2.55", dnscheck.SPFPass, "ip4:192.0.2.0/24"},
		{"ip.test", "198.51.100.7", dnscheck.SPFPass, "ip4:198.51.100.7"},
		{"ip.test", "198.51.100.8", dnscheck.SPFFail, "-all"},
		{"ip.test", "2001:db8:ffff::1", dnscheck.SPFPass, "ip6:2001:db8::/32"},
		{"ip.test", "2001:db9::1", dnscheck.SPFFail, "-all"},
		{"soft.test", "192.0.2.2", dnscheck.SPFSoftFail, "~all"},
		{"neutral.test", "192.0.2.2", dnscheck.SPFNeutral, "?all"},
		{"noall.test", "192.0.2.2", dnscheck.SPFNeutral, ""},
		{"plus.test", "192.0.2.2", dnscheck.SPFFail, "-ip4:192.0.2.2"},
		{"plus.test", "192.0.2.3", dnscheck.SPFPass, "+all"},
		{"inc.test", "192.0.2.55", dnscheck.SPFPass, "include:ip.test"},
		{"inc.test", "203.0.113.1", dnscheck.SPFFail, "-all"}, // include's softfail does not match
		{"incmissing.test", "192.0.2.1", dnscheck.SPFPermError, "include:missing.test"},
		{"incbroken.test", "192.0.2.1", dnscheck.SPFPermError, ""},
		{"inctemp.test", "192.0.2.1", dnscheck.SPFTempError, ""},
		{"a.test", "203.0.113.10", dnscheck.SPFPass, "a"},
		{"a.test", "198.51.100.200", dnscheck.SPFPass, "a:host.a.test/24"},
		{"a.test", "2001:db8:1:2::ffff", dnscheck.SPFPass, "a:v6.a.test//64"},
		{"a.test", "198.51.101.1", dnscheck.SPFFail, "-all"},
		{"mx.test", "203.0.113.22", dnscheck.SPFPass, "mx"},
		{"mx.test", "203.0.113.43", dnscheck.SPFPass, "mx:other.test/30"},
		{"mx.test", "203.0.113.44", dnscheck.SPFFail, "-all"},
		{"nomx.test", "203.0.113.50", dnscheck.SPFFail, "-all"}, // no implicit MX in SPF
		{"redir.test", "192.0.2.99", dnscheck.SPFPass, "ip4:192.0.2.99"},
		{"redir.test", "192.0.2.55", dnscheck.SPFPass, "redirect=ip.test ip4:192.0.2.0/24"},
		{"redir.test", "203.0.113.1", dnscheck.SPFFail, "redirect=ip.test -all"},
		{"redirnone.test", "192.0.2.1", dnscheck.SPFPermError, ""},
		{"exists.test", "192.0.2.5", dnscheck.SPFPass, "exists:%{ir}.%{v}.wl.exists.test"},
		{"exists.test", "192.0.2.6", dnscheck.SPFFail, "-all"},
		{"ptr.test", "192.0.2.9", dnscheck.SPFPass, "ptr"},
		{"ptr.test", "192.0.2.10", dnscheck.SPFFail, "-all"},
		{"two.test", "192.0.2.1", dnscheck.SPFPermError, ""},
		{"notspf.test", "192.0.2.1", dnscheck.SPFNone, ""},
		{"nosuch.test", "192.0.2.1", dnscheck.SPFNone, ""},
		{"void.test", "192.0.2.1", dnscheck.SPFPermError, ""},
		{"split.test", "192.0.2.2", dnscheck.SPFFail, "-all"},
		{"exp.test", "192.0.2.2", dnscheck.SPFFail, "-all"},
		{"allarg.test", "192.0.2.2", dnscheck.SPFPermError, ""},
		{"macro.test", "192.0.2.77", dnscheck.SPFPass, "include:%{d2}.spf.example"},
		{"deep0.test", "192.0.2.1", dnscheck.SPFPermError, ""}, // detail checked below
		{"ten0.test", "203.0.113.10", dnscheck.SPFPass, "include:ten1.test"},
	}
	for _, c := range cases {
		t.Run(c.domain+"/"+c.ip, func(t *testing.T) {
			out := dnscheck.EvaluateSPF(ctxT(t), r, netip.MustParseAddr(c.ip), c.domain)
			if out.Result != c.want {
				t.Fatalf("result %s (matched %q, %s), want %s", out.Result, out.Matched, out.Detail, c.want)
			}
			if c.matched != "" && out.Matched != c.matched {
				t.Fatalf("matched %q, want %q", out.Matched, c.matched)
			}
			if c.domain == "deep0.test" && !strings.Contains(out.Detail, "more than 10") {
				t.Fatalf("deep include chain: detail %q, want the 10-lookup limit", out.Detail)
			}
			if c.domain == "void.test" && !strings.Contains(out.Detail, "more than 2") {
				t.Fatalf("void lookups: detail %q, want the void-lookup limit", out.Detail)
			}
			if (out.Result == dnscheck.SPFPermError || out.Result == dnscheck.SPFTempError) && out.Detail == "" {
				t.Fatal("error result without detail")
			}
		})
	}
}

func TestCheckSPFHost(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	r := newResolver(t, srv.Addr())
	ctx := ctxT(t)

	c := dnscheck.CheckSPFHost(ctx, r, "good.test", "smtp.smarthost.test")
	if c.Status != dnscheck.StatusPass || c.Blocking {
		t.Fatalf("including the smart host: %+v", c)
	}
	c = dnscheck.CheckSPFHost(ctx, r, "omit.test", "smtp.smarthost.test")
	if c.Status != dnscheck.StatusFail || c.Fix == "" || c.Blocking {
		t.Fatalf("omitting the smart host: %+v", c)
	}
	c = dnscheck.CheckSPFHost(ctx, r, "good.test", "nosuch.smarthost.test")
	if c.Status != dnscheck.StatusPermError {
		t.Fatalf("unknown smart host: %+v", c)
	}
	c = dnscheck.CheckSPF(ctx, r, "nosuch.test", netip.MustParseAddr("127.0.0.21"), "the egress address")
	if c.Status != dnscheck.StatusFail || c.Fix == "" {
		t.Fatalf("no SPF record: %+v", c)
	}
}

func TestCheckSPFHost_Unbound(t *testing.T) {
	relaytest.Require(t, "unbound")
	r := newResolver(t, dnstest.StartUnbound(t, egressZone...))
	if c := dnscheck.CheckSPFHost(ctxT(t), r, "good.test", "smtp.smarthost.test"); c.Status != dnscheck.StatusPass {
		t.Fatalf("including the smart host: %+v", c)
	}
	if c := dnscheck.CheckSPFHost(ctxT(t), r, "omit.test", "smtp.smarthost.test"); c.Status != dnscheck.StatusFail {
		t.Fatalf("omitting the smart host: %+v", c)
	}
}

// TestCheckSPFHost_IPLiteral: a smart host written as an IP address is judged as that address; no A query is
// sent for it.
func TestCheckSPFHost_IPLiteral(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	r := newResolver(t, srv.Addr())
	c := dnscheck.CheckSPFHost(ctxT(t), r, "good.test", "127.0.0.25")
	if c.Status != dnscheck.StatusPass || !strings.Contains(c.Detail, "127.0.0.25") {
		t.Fatalf("an authorised smart host IP: %+v", c)
	}
	for _, q := range srv.Queries() {
		if strings.HasPrefix(q.Name, "127.0.0.25") && (q.Type == dns.TypeA || q.Type == dns.TypeAAAA) {
			t.Errorf("looked up the IP literal: %+v", q)
		}
	}
}
