package dnscheck_test

import (
	"net/netip"
	"testing"

	"ptrelay/dnscheck"
)

// Name shapes as ISPs and hosting providers publish them (addresses replaced by documentation or made-up ones,
// keeping each provider's pattern).
func TestLooksGeneric(t *testing.T) {
	cases := []struct {
		name    string
		ip      string // "" when the name is judged alone
		generic bool
	}{
		// Generic: dynamic, residential or address-derived names.
		{"c-73-158-12-34.hsd1.ca.comcast.net", "73.158.12.34", true},
		{"pool-71-105-23-4.nycmny.fios.verizon.net", "71.105.23.4", true},
		{"cpe-24-90-1-2.nyc.res.rr.com", "24.90.1.2", true},
		{"adsl-99-12-34-56.dsl.pltn13.sbcglobal.net", "99.12.34.56", true},
		{"p5B0C1D2E.dip0.t-ipconnect.de", "91.12.29.46", true},
		{"ip5f5a1b2c.dynamic.kabel-deutschland.de", "95.90.27.44", true},
		{"dslb-088-065-012-034.088.065.pools.vodafone-ip.de", "88.65.12.34", true},
		{"host86-130-12-34.range86-130.btcentralplus.com", "86.130.12.34", true},
		{"ppp-58-8-12-34.revip2.asianet.co.th", "58.8.12.34", true},
		{"bb116-14-23-45.singnet.com.sg", "116.14.23.45", true},
		{"dsl-187-156-12-34-dyn.prod-infinitum.com.mx", "187.156.12.34", true},
		{"static.88-198-12-34.clients.your-server.de", "88.198.12.34", true},
		{"ec2-54-12-34-56.compute-1.amazonaws.com", "54.12.34.56", true},
		{"34.12.113.203.static.isp.example", "203.113.12.34", true},
		{"host-203-000-113-005.isp.example", "203.0.113.5", true},
		{"203000113005.isp.example", "203.0.113.5", true},
		{"user-12ab34.cable.mindspring.com", "", true},
		{"dynamic-ip-adsl.isp.example", "", true},
		{"dhcp-12.campus.university.example", "", true},
		{"client-17.broadband.isp.example", "", true},
		{"customer.pppoe.isp.example", "", true},
		{"cable-12.sub.isp.example", "", true},
		{"unassigned.isp.example", "", true},
		{"home.cust.isp.example", "", true},
		{"a.b.c.d.1.2.3.4.reverse.isp.example", "", true},
		{"2001-db8-1-2-21a-2bff-fe3c-4d5e.dyn.isp.example", "2001:db8:1:2:21a:2bff:fe3c:4d5e", true},
		{"021a2bfffe3c4d5e.cust.isp.example", "", true},
		{"2001-db8-1-2-21a-2bff-fe3c-4d5e.v6.isp.example", "2001:db8:1:2:21a:2bff:fe3c:4d5e", true},
		{"host-021a2bfffe3c4d5e.isp.example", "2001:db8:1:2:21a:2bff:fe3c:4d5e", true},

		// Not generic: names of mail servers, some with digits or ISP-looking words in the registered domain.
		{"mail.example.com", "203.0.113.5", false},
		{"mx1.example.com", "203.0.113.5", false},
		{"smtp.kanzlei-mueller.de", "198.51.100.7", false},
		{"mail-wr1-f41.google.com", "209.85.221.41", false},
		{"a27-10.smtp-out.amazonses.com", "54.240.27.10", false},
		{"mail.dynamic-consulting.example", "203.0.113.5", false},
		{"exchange.poolparty.example", "203.0.113.5", false},
		{"srv01.firma.example", "203.0.113.1", false},
		{"relay.cablecompany.example", "203.0.113.5", false},
		{"mail2.vps123.example", "203.0.113.5", false},
		{"outbound.mailhop.org", "203.0.113.5", false},
		{"mail.example.com", "", false},
		{"mx.isp.example", "", false},
		{"mail6.example.com", "2001:db8:1:2:21a:2bff:fe3c:4d5e", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ip netip.Addr
			if c.ip != "" {
				ip = netip.MustParseAddr(c.ip)
			}
			got, why := dnscheck.LooksGeneric(c.name, ip)
			if got != c.generic {
				t.Fatalf("LooksGeneric(%q, %v) = %v (%s), want %v", c.name, c.ip, got, why, c.generic)
			}
			if got && why == "" {
				t.Fatal("generic without a reason")
			}
		})
	}
}

func FuzzLooksGeneric(f *testing.F) {
	f.Add("c-73-158-12-34.hsd1.ca.comcast.net", "73.158.12.34")
	f.Add("p5B0C1D2E.dip0.t-ipconnect.de", "91.12.29.46")
	f.Add("mail.example.com", "::1")
	f.Fuzz(func(t *testing.T, name, ip string) {
		a, _ := netip.ParseAddr(ip)
		g, why := dnscheck.LooksGeneric(name, a)
		if g && why == "" {
			t.Fatal("generic without a reason")
		}
	})
}
