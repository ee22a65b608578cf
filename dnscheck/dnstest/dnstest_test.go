package dnstest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck/dnstest"
)

func ask(t *testing.T, addr, network, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return r
}

func TestServer_Answers(t *testing.T) {
	srv := dnstest.New(t,
		"a.example.test. A 127.0.0.1",
		"alias.example.test. CNAME a.example.test.",
		"deep.ent.example.test. A 127.0.0.2",
	)
	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
	}{
		{"a.example.test", dns.TypeA, dns.RcodeSuccess, 1},
		{"A.EXAMPLE.TEST", dns.TypeA, dns.RcodeSuccess, 1},
		{"a.example.test", dns.TypeMX, dns.RcodeSuccess, 0},     // NODATA
		{"ent.example.test", dns.TypeA, dns.RcodeSuccess, 0},    // empty non-terminal
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, 0}, // NXDOMAIN
		{"alias.example.test", dns.TypeA, dns.RcodeSuccess, 2},  // CNAME + A
		{"alias.example.test", dns.TypeCNAME, dns.RcodeSuccess, 1},
	}
	for _, c := range cases {
		r := ask(t, srv.Addr(), "udp", c.name, c.qtype, false)
		if r.Rcode != c.rcode || len(r.Answer) != c.answers {
			t.Errorf("%s %s: rcode %s, %d answers; want %s, %d", dns.TypeToString[c.qtype], c.name,
				dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[c.rcode], c.answers)
		}
	}
	srv.Remove("a.example.test", dns.TypeA)
	if r := ask(t, srv.Addr(), "tcp", "a.example.test", dns.TypeA, false); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove: %s", dns.RcodeToString[r.Rcode])
	}
	if q := srv.Queries(); len(q) != len(cases)+1 || q[len(q)-1].Net != "tcp" {
		t.Errorf("queries: %+v", q)
	}
}

func TestServer_Truncates(t *testing.T) {
	var recs []string
	for i := range 40 {
		recs = append(recs, fmt.Sprintf(`big.test. TXT "padding padding padding padding padding %02d"`, i))
	}
	srv := dnstest.New(t, recs...)
	for _, edns := range []bool{false, true} {
		r := ask(t, srv.Addr(), "udp", "big.test", dns.TypeTXT, edns)
		if !r.Truncated || len(r.Answer) >= 40 {
			t.Errorf("edns=%v: TC=%v with %d answers over UDP", edns, r.Truncated, len(r.Answer))
		}
	}
	if r := ask(t, srv.Addr(), "tcp", "big.test", dns.TypeTXT, false); r.Truncated || len(r.Answer) != 40 {
		t.Errorf("TCP: TC=%v with %d answers", r.Truncated, len(r.Answer))
	}
}

func TestServer_Failures(t *testing.T) {
	srv := dnstest.New(t, "a.test. A 127.0.0.1", "a.test. MX 0 .")
	srv.Fail("a.test", dns.TypeA, dnstest.ServFail)
	srv.Fail("a.test", dns.TypeMX, dnstest.Refused)
	if r := ask(t, srv.Addr(), "udp", "a.test", dns.TypeA, false); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("ServFail: %s", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, srv.Addr(), "udp", "a.test", dns.TypeMX, false); r.Rcode != dns.RcodeRefused {
		t.Errorf("Refused: %s", dns.RcodeToString[r.Rcode])
	}
	srv.Fail("a.test", 0, dnstest.Timeout)
	srv.Fail("a.test", dns.TypeA, 0)
	srv.Fail("a.test", dns.TypeMX, 0)
	m := new(dns.Msg)
	m.SetQuestion("a.test.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	if _, _, err := c.Exchange(m, srv.Addr()); err == nil {
		t.Error("Timeout: got an answer")
	}
	srv.Fail("a.test", 0, 0)
	if r := ask(t, srv.Addr(), "udp", "a.test", dns.TypeA, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after clearing: %v", r)
	}
}

func TestStartUnbound(t *testing.T) {
	addr := dnstest.StartUnbound(t,
		"mx.example.test. A 127.0.0.1",
		"5.0.0.127.in-addr.arpa. PTR mx.example.test.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR mx.example.test.",
	)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"mx.example.test", dns.TypeA, dns.RcodeSuccess, 1},
		{"mx.example.test", dns.TypeAAAA, dns.RcodeSuccess, 0},
		{"other.example.test", dns.TypeA, dns.RcodeNameError, 0},
		{"example.com", dns.TypeA, dns.RcodeNameError, 0}, // never leaves the machine
		{"5.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, 1},
		{"1.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, 0}, // unbound's localhost default is replaced
	}
	for _, c := range cases {
		r := ask(t, addr, "udp", c.name, c.qtype, false)
		if r.Rcode != c.rcode || len(r.Answer) != c.n {
			t.Errorf("%s %s: %s with %d answers, want %s with %d", dns.TypeToString[c.qtype], c.name,
				dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[c.rcode], c.n)
		}
	}
	r := ask(t, addr, "udp", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", dns.TypePTR, false)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "mx.example.test." {
		t.Errorf("::1 PTR: %v (unbound's default must not answer localhost)", r.Answer)
	}
}

// The recursive set-up answers through unbound's iterator from dnsmasq's data: answers are not authoritative
// (unbound did not own them) but recursion-available, NXDOMAIN comes from the authority for unknown names in
// its zones, and names outside them are refused without leaving the machine.
func TestStartRecursive(t *testing.T) {
	records := []string{
		"dest.test. MX 10 mx.dest.test.",
		"mx.dest.test. A 127.0.0.61",
		"mx.dest.test. AAAA ::1",
		"dest.test. TXT \"v=spf1 -all\"",
		"alias.dest.test. CNAME mx.dest.test.",
		"61.0.0.127.in-addr.arpa. PTR mx.dest.test.",
	}
	auth := dnstest.StartDnsmasq(t, records...)
	if r := ask(t, auth, "udp", "dest.test", dns.TypeMX, false); !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("dnsmasq as the authority: %v", r)
	}
	addr := dnstest.StartRecursive(t, records...)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		want  string // the first answer's data
	}{
		{"dest.test", dns.TypeMX, dns.RcodeSuccess, "10 mx.dest.test."},
		{"mx.dest.test", dns.TypeA, dns.RcodeSuccess, "127.0.0.61"},
		{"mx.dest.test", dns.TypeAAAA, dns.RcodeSuccess, "::1"},
		{"dest.test", dns.TypeTXT, dns.RcodeSuccess, "\"v=spf1 -all\""},
		{"alias.dest.test", dns.TypeA, dns.RcodeSuccess, "mx.dest.test."},
		{"61.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "mx.dest.test."},
		{"nobody.dest.test", dns.TypeA, dns.RcodeNameError, ""},
		{"example.com", dns.TypeA, dns.RcodeRefused, ""}, // never leaves the machine
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			r := ask(t, addr, network, c.name, c.qtype, true)
			got := ""
			if len(r.Answer) > 0 {
				f := strings.Fields(r.Answer[0].String())
				got = strings.Join(f[4:], " ")
			}
			if r.Rcode != c.rcode || got != c.want {
				t.Errorf("%s %s over %s: %s %q, want %s %q", dns.TypeToString[c.qtype], c.name, network,
					dns.RcodeToString[r.Rcode], got, dns.RcodeToString[c.rcode], c.want)
			}
			if c.rcode == dns.RcodeSuccess && (r.Authoritative || !r.RecursionAvailable) {
				t.Errorf("%s %s: aa=%v ra=%v, want a recursive answer", dns.TypeToString[c.qtype], c.name,
					r.Authoritative, r.RecursionAvailable)
			}
		}
	}
}
