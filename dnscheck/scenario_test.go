package dnscheck_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/relaytest"
)

// egressZone holds one egressCase per loopback address, served by the in-process server and by unbound.
// good.test is the sending domain; mail.good.test the hostname ptrelay greets with.
var egressZone = []string{
	// .21 good: PTR = hostname, forward-confirmed, in the domain.
	"21.0.0.127.in-addr.arpa. PTR mail.good.test.",
	"mail.good.test. A 127.0.0.21",
	// .22 no PTR at all.
	// .23 generic PTR in the ISP's domain, forward-confirmed (ISPs do publish both).
	"23.0.0.127.in-addr.arpa. PTR 127-0-0-23.dyn.isp.test.",
	"127-0-0-23.dyn.isp.test. A 127.0.0.23",
	// .24 PTR whose name resolves elsewhere.
	"24.0.0.127.in-addr.arpa. PTR mail.elsewhere.test.",
	"mail.elsewhere.test. A 127.0.0.99",
	// .25 PTR in the domain but not the hostname.
	"25.0.0.127.in-addr.arpa. PTR relay.good.test.",
	"relay.good.test. A 127.0.0.25",
	// The lists' RFC 5782 test points, which a working list always lists.
	"2.0.0.127.zen.spamhaus.org. A 127.0.0.2",
	"2.0.0.127.zen.spamhaus.org. A 127.0.0.4",
	"2.0.0.127.zen.spamhaus.org. A 127.0.0.10",
	"2.0.0.127.bl.other.test. A 127.0.0.2",
	// .26 good PTR, listed in the PBL (Spamhaus-maintained, 127.0.0.11).
	"26.0.0.127.in-addr.arpa. PTR mail.good.test.",
	"mail.good.test. A 127.0.0.26",
	"26.0.0.127.zen.spamhaus.org. A 127.0.0.11",
	// .27 good PTR; Spamhaus refuses the query (127.255.255.254: public resolver).
	"27.0.0.127.in-addr.arpa. PTR mail.good.test.",
	"mail.good.test. A 127.0.0.27",
	"27.0.0.127.zen.spamhaus.org. A 127.255.255.254",
	// .28 good PTR, listed in a non-Spamhaus list.
	"28.0.0.127.in-addr.arpa. PTR mail.good.test.",
	"mail.good.test. A 127.0.0.28",
	"28.0.0.127.bl.other.test. A 127.0.0.2",
	// .29 two PTR names, both forward-confirmed: the generic ISP one and ours.
	"29.0.0.127.in-addr.arpa. PTR 127-0-0-29.dyn.isp.test.",
	"29.0.0.127.in-addr.arpa. PTR mail.good.test.",
	"127-0-0-29.dyn.isp.test. A 127.0.0.29",
	"mail.good.test. A 127.0.0.29",
	// SPF: good.test authorises .21 and includes the smart host; omit.test leaves the smart host out.
	"good.test. TXT \"v=spf1 ip4:127.0.0.21 ip4:127.0.0.25/32 a:mail.good.test include:_spf.smarthost.test -all\"",
	"omit.test. TXT \"v=spf1 ip4:127.0.0.21 -all\"",
	"_spf.smarthost.test. TXT \"v=spf1 ip4:127.0.0.50 ip4:127.0.0.51 ~all\"",
	"smtp.smarthost.test. A 127.0.0.50",
	"smtp.smarthost.test. A 127.0.0.51",
}

type egressCase struct {
	name     string
	ip       string
	dnsbl    []string
	want     map[string]dnscheck.Status // check ID -> status; IDs not listed must be absent
	verdict  dnscheck.Verdict
	blocking []string // IDs that must be blocking failures (the verdict's reasons)
}

var egressScenarios = []egressCase{
	{
		name: "GoodPTR", ip: "127.0.0.21", dnsbl: []string{"zen.spamhaus.org"},
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhaus.org": "pass", "port25": "pass",
			"spf:good.test": "pass"},
		verdict: dnscheck.VerdictDirectOK,
	},
	{
		name: "NoPTR", ip: "127.0.0.22",
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "permerror", "fcrdns": "permerror",
			"port25": "pass", "spf:good.test": "fail"},
		verdict: dnscheck.VerdictSmarthost, blocking: []string{"ptr", "fcrdns"},
	},
	{
		name: "GenericPTRInISPDomain", ip: "127.0.0.23",
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "fail",
			"ptr-domain": "fail", "generic": "fail", "port25": "pass", "spf:good.test": "fail"},
		verdict: dnscheck.VerdictSmarthost, blocking: []string{"generic"},
	},
	{
		name: "PTRResolvesElsewhere", ip: "127.0.0.24",
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "fail", "generic": "pass",
			"port25": "pass", "spf:good.test": "fail"},
		verdict: dnscheck.VerdictSmarthost, blocking: []string{"fcrdns"},
	},
	{
		name: "PTRInDomainNotHostname", ip: "127.0.0.25",
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "fail",
			"ptr-domain": "pass", "generic": "pass", "port25": "pass", "spf:good.test": "pass"},
		verdict: dnscheck.VerdictDirectOK,
	},
	{
		name: "ListedInPBL", ip: "127.0.0.26", dnsbl: []string{"zen.spamhaus.org"},
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhaus.org": "fail", "port25": "pass",
			"spf:good.test": "pass"},
		verdict: dnscheck.VerdictSmarthost, blocking: []string{"dnsbl:zen.spamhaus.org"},
	},
	{
		name: "DNSBLRefused", ip: "127.0.0.27", dnsbl: []string{"zen.spamhaus.org"},
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhaus.org": "permerror", "port25": "pass",
			"spf:good.test": "pass"},
		verdict: dnscheck.VerdictDirectOK,
	},
	{
		name: "ListedElsewhere", ip: "127.0.0.28", dnsbl: []string{"zen.spamhaus.org", "bl.other.test"},
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhaus.org": "pass", "dnsbl:bl.other.test": "fail",
			"port25": "pass", "spf:good.test": "pass"},
		verdict: dnscheck.VerdictSmarthost, blocking: []string{"dnsbl:bl.other.test"},
	},
}

func init() {
	egressScenarios = append(egressScenarios, egressCase{
		// With several PTR names the hostname is the one verified and judged.
		name: "TwoPTRNames", ip: "127.0.0.29",
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "port25": "pass", "spf:good.test": "pass"},
		verdict: dnscheck.VerdictDirectOK,
	}, egressCase{
		// A list that does not answer for its test point (misspelt zone): "not listed" would be a guess.
		name: "DNSBLDeadZone", ip: "127.0.0.21", dnsbl: []string{"zen.spamhuas.org"},
		want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhuas.org": "permerror", "port25": "pass",
			"spf:good.test": "pass"},
		verdict: dnscheck.VerdictDirectOK,
	})
}

func TestSelfCheck_InProcess(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	runEgressScenarios(t, newResolver(t, srv.Addr()))
}

func TestSelfCheck_Unbound(t *testing.T) {
	relaytest.Require(t, "unbound")
	runEgressScenarios(t, newResolver(t, dnstest.StartUnbound(t, egressZone...)))
}

// smtpListener stands in for the port-25 probe target.
func smtpListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func runEgressScenarios(t *testing.T, r *dnscheck.Resolver) {
	probe := smtpListener(t)
	for _, sc := range egressScenarios {
		t.Run(sc.name, func(t *testing.T) {
			rep := dnscheck.SelfCheck(ctxT(t), dnscheck.SelfCheckOptions{
				Resolver: r, Hostname: "mail.good.test", Domain: "good.test",
				Egress: dnscheck.EgressOptions{Static: sc.ip}, DNSBL: sc.dnsbl,
				Port25Probe: probe, Timeout: 2 * time.Second,
			}, dnscheck.IPv4)
			assertReport(t, rep, sc)
		})
	}
}

func assertReport(t *testing.T, rep dnscheck.Report, sc egressCase) {
	t.Helper()
	got := map[string]dnscheck.Check{}
	for _, c := range rep.Checks {
		if _, dup := got[c.ID]; dup {
			t.Errorf("check %s twice", c.ID)
		}
		got[c.ID] = c
		if c.Status != dnscheck.StatusPass && c.Fix == "" {
			t.Errorf("check %s is %s without a fix: %+v", c.ID, c.Status, c)
		}
	}
	for id, want := range sc.want {
		c, ok := got[id]
		if !ok {
			t.Errorf("check %s missing", id)
			continue
		}
		if c.Status != want {
			t.Errorf("check %s = %s (%s), want %s", id, c.Status, c.Detail, want)
		}
	}
	for id, c := range got {
		if _, ok := sc.want[id]; !ok {
			t.Errorf("unexpected check %s: %+v", id, c)
		}
	}
	if rep.Verdict != sc.verdict {
		t.Errorf("verdict %s (%v), want %s", rep.Verdict, rep.Reasons, sc.verdict)
	}
	if rep.Egress.IP != netip.MustParseAddr(sc.ip) {
		t.Errorf("egress %v, want %s", rep.Egress.IP, sc.ip)
	}
	for _, id := range sc.blocking {
		c := got[id]
		if !c.Blocking || c.Level() != "fail" {
			t.Errorf("check %s: blocking=%v level=%s, want a blocking failure", id, c.Blocking, c.Level())
		}
	}
	if len(rep.Reasons) != len(sc.blocking) {
		t.Errorf("reasons %q, want one per blocking check %v", rep.Reasons, sc.blocking)
	}
	if t.Failed() || testing.Verbose() {
		for _, c := range rep.Checks {
			t.Logf("%-24s %-9s %-5s %s | %s", c.ID, c.Status, c.Level(), c.Detail, c.Fix)
		}
	}
}

// IPv6 egress: nibble-format PTR and DNSBL names, AAAA for FCrDNS, ip6 in SPF.
var egressZone6 = []string{
	"5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mail.good6.test.",
	"mail.good6.test. AAAA 2001:db8::25",
	"good6.test. TXT \"v=spf1 ip6:2001:db8::/64 -all\"",
	"6.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mail.good6.test.",
	"6.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org. A 127.0.0.3",
	"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.zen.spamhaus.org. A 127.0.0.2",
}

func TestSelfCheck_IPv6(t *testing.T) {
	srv := dnstest.New(t, egressZone6...)
	testSelfCheckIPv6(t, newResolver(t, srv.Addr()))
}

func TestSelfCheck_IPv6_Unbound(t *testing.T) {
	relaytest.Require(t, "unbound")
	testSelfCheckIPv6(t, newResolver(t, dnstest.StartUnbound(t, egressZone6...)))
}

func testSelfCheckIPv6(t *testing.T, r *dnscheck.Resolver) {
	cases := []egressCase{
		{
			name: "Good", ip: "2001:db8::25", dnsbl: []string{"zen.spamhaus.org"},
			want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
				"ptr-domain": "pass", "generic": "pass", "dnsbl:zen.spamhaus.org": "pass", "spf:good6.test": "pass"},
			verdict: dnscheck.VerdictDirectOK,
		},
		{
			// PTR names a host whose AAAA is another address; and the address is on the SBL CSS.
			name: "ElsewhereAndListed", ip: "2001:db8::26", dnsbl: []string{"zen.spamhaus.org"},
			want: map[string]dnscheck.Status{"egress": "pass", "ptr": "pass", "fcrdns": "fail", "generic": "pass",
				"dnsbl:zen.spamhaus.org": "fail", "spf:good6.test": "pass"},
			verdict: dnscheck.VerdictSmarthost, blocking: []string{"fcrdns", "dnsbl:zen.spamhaus.org"},
		},
	}
	for _, sc := range cases {
		t.Run(sc.name, func(t *testing.T) {
			rep := dnscheck.SelfCheck(ctxT(t), dnscheck.SelfCheckOptions{
				Resolver: r, Hostname: "mail.good6.test", Domain: "good6.test",
				Egress: dnscheck.EgressOptions{Static: sc.ip}, DNSBL: sc.dnsbl,
			}, dnscheck.IPv6)
			assertReport(t, rep, sc)
		})
	}
}
