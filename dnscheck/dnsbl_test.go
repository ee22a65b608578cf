package dnscheck_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

func TestDNSBLName(t *testing.T) {
	cases := map[string]string{
		"192.0.2.99":                "99.2.0.192.zen.spamhaus.org.",
		"::ffff:1.2.3.4":            "4.3.2.1.zen.spamhaus.org.",
		"2001:db8:1:2:3:4:567:89ab": "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org.",
	}
	for ip, want := range cases {
		if got := dnscheck.DNSBLName(netip.MustParseAddr(ip), "zen.spamhaus.org."); got != want {
			t.Errorf("DNSBLName(%s) = %s, want %s", ip, got, want)
		}
	}
}

func TestDecodeDNSBL(t *testing.T) {
	cases := []struct {
		zone, code               string
		listed, dynamic, refused bool
		meaning                  string
	}{
		{"zen.spamhaus.org", "127.0.0.2", true, false, false, "SBL: Spamhaus Block List (spam source)"},
		{"zen.spamhaus.org", "127.0.0.3", true, false, false, "SBL CSS: snowshoe spam source"},
		{"zen.spamhaus.org", "127.0.0.4", true, false, false, "XBL: exploited or infected host"},
		{"zen.spamhaus.org", "127.0.0.7", true, false, false, "XBL: exploited or infected host"},
		{"zen.spamhaus.org", "127.0.0.9", true, false, false, "SBL DROP: hijacked network"},
		{"zen.spamhaus.org", "127.0.0.10", true, true, false, "PBL: end-user (dynamic) range, listed by the ISP"},
		{"pbl.spamhaus.org", "127.0.0.11", true, true, false, "PBL: end-user (dynamic) range, listed by Spamhaus"},
		{"KEY.zen.dq.spamhaus.net", "127.0.0.11", true, true, false, "PBL: end-user (dynamic) range, listed by Spamhaus"},
		{"zen.spamhaus.org", "127.255.255.252", false, false, true, "the query was refused: the zone name is wrong (typo)"},
		{"zen.spamhaus.org", "127.255.255.254", false, false, true, "the query was refused: queries through public or open resolvers are blocked"},
		{"zen.spamhaus.org", "127.255.255.255", false, false, true, "the query was refused: too many queries from this resolver"},
		{"bl.spamcop.net", "127.0.0.2", true, false, false, "listed"},
		{"bl.spamcop.net", "127.0.0.11", true, false, false, "listed"},
		{"bl.spamcop.net", "127.255.255.254", false, false, true, "the query was refused: queries through public or open resolvers are blocked"},
		{"bl.example", "192.0.2.1", false, false, false, "not a 127.0.0.x return code: ignored"},
		{"bl.example", "::1", false, false, false, "not an IPv4 return code: ignored"},
	}
	for _, c := range cases {
		d := dnscheck.DecodeDNSBL(c.zone, netip.MustParseAddr(c.code))
		if d.Listed != c.listed || d.Dynamic != c.dynamic || d.Refused != c.refused || d.Meaning != c.meaning {
			t.Errorf("%s %s: got %+v, want listed=%v dynamic=%v refused=%v %q", c.zone, c.code, d,
				c.listed, c.dynamic, c.refused, c.meaning)
		}
	}
}

func TestCheckDNSBL(t *testing.T) {
	srv := dnstest.New(t,
		"2.0.0.127.zen.spamhaus.org. A 127.0.0.2",
		"2.0.0.127.zen.spamhaus.org. A 127.0.0.4",
		"3.0.0.127.zen.spamhaus.org. A 127.0.0.10",
		"4.0.0.127.zen.spamhaus.org. A 127.255.255.254",
		"5.0.0.127.zen.spamhaus.org. A 10.0.0.1",
	)
	srv.Fail("6.0.0.127.zen.spamhaus.org", dns.TypeA, dnstest.ServFail)
	srv.Add("2.0.0.127.public.test. A 127.255.255.254", "7.0.0.127.public.test. A 127.255.255.254")
	r := newResolver(t, srv.Addr())
	cases := []struct {
		ip       string
		want     dnscheck.Status
		blocking bool
	}{
		{"127.0.0.1", dnscheck.StatusPass, true}, // NXDOMAIN: not listed
		{"127.0.0.2", dnscheck.StatusFail, true},
		{"127.0.0.3", dnscheck.StatusFail, true},
		{"127.0.0.4", dnscheck.StatusPermError, false},
		{"127.0.0.5", dnscheck.StatusPass, true},
		{"127.0.0.6", dnscheck.StatusTempError, true},
	}
	for _, c := range cases {
		res := dnscheck.CheckDNSBL(ctxT(t), r, netip.MustParseAddr(c.ip), "zen.spamhaus.org")
		if res.Check.Status != c.want || res.Check.Blocking != c.blocking {
			t.Errorf("%s: got %+v, want %s blocking=%v", c.ip, res.Check, c.want, c.blocking)
		}
	}
	// A list refusing our resolver answers 127.255.255.254 for the test point too: not listed means nothing.
	res := dnscheck.CheckDNSBL(ctxT(t), r, netip.MustParseAddr("127.0.0.1"), "public.test")
	if res.Check.Status != dnscheck.StatusPermError || res.Check.Blocking || !strings.Contains(res.Check.Detail, "cannot tell") {
		t.Errorf("refusing list: %+v", res.Check)
	}
	res = dnscheck.CheckDNSBL(ctxT(t), r, netip.MustParseAddr("127.0.0.1"), "empty.test")
	if res.Check.Status != dnscheck.StatusPermError || !strings.Contains(res.Check.Detail, "test point") {
		t.Errorf("dead list: %+v", res.Check)
	}
	res = dnscheck.CheckDNSBL(ctxT(t), r, netip.MustParseAddr("127.0.0.2"), "zen.spamhaus.org")
	if len(res.Codes) != 2 || res.Codes[0].Meaning == res.Codes[1].Meaning {
		t.Errorf("both codes decoded: %+v", res.Codes)
	}
	// The check carries the codes that list the address, for programs (alerts say what each means).
	if got := fmt.Sprint(res.Check.Codes); got != "[127.0.0.2 127.0.0.4]" && got != "[127.0.0.4 127.0.0.2]" {
		t.Errorf("check codes %s", got)
	}
	res = dnscheck.CheckDNSBL(ctxT(t), r, netip.MustParseAddr("127.0.0.4"), "zen.spamhaus.org")
	if len(res.Check.Codes) != 0 {
		t.Errorf("a refusal carries codes: %v", res.Check.Codes)
	}
}

func FuzzDecodeDNSBL(f *testing.F) {
	f.Add("zen.spamhaus.org", []byte{127, 0, 0, 11})
	f.Add("bl.example", []byte{127, 255, 255, 254})
	f.Fuzz(func(t *testing.T, zone string, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		d := dnscheck.DecodeDNSBL(zone, a)
		if d.Listed && d.Refused {
			t.Fatalf("%s %s: listed and refused", zone, a)
		}
		if d.Meaning == "" {
			t.Fatalf("%s %s: no meaning", zone, a)
		}
		if o := a.Unmap(); d.Listed && (!o.Is4() || o.As4()[0] != 127) {
			t.Fatalf("%s %s: listed outside 127/8", zone, a)
		}
	})
}
