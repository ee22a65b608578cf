package tlspolicy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/relaytest"
)

// TestCheckDomain: `ptrelay check -domain D`'s recipient-side lines, against an in-process DNS server (secure
// zones answer with the AD bit) and an HTTPS policy server with a test CA's certificate.
func TestCheckDomain(t *testing.T) {
	ca := relaytest.NewCA(t, t.TempDir())
	hosts := []string{"mta-sts.good.test", "mta-sts.partial.test", "mta-sts.broken.test"}
	certFile, keyFile := ca.Issue(t, "sts", relaytest.CertOptions{Hosts: hosts})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(strings.Split(r.Host, ":")[0], "mta-sts.") {
		case "good.test":
			_, _ = w.Write([]byte("version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n"))
		case "partial.test":
			_, _ = w.Write([]byte("version: STSv1\nmode: enforce\nmx: mx1.partial.test\nmax_age: 86400\n"))
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	tlsaData := strings.Repeat("AB", 32)
	d := dnstest.New(t,
		"good.test. MX 10 mx.good.test.", "mx.good.test. A 127.0.0.1",
		`_mta-sts.good.test. TXT "v=STSv1; id=1;"`, "mta-sts.good.test. A 127.0.0.1",
		"_25._tcp.mx.good.test. TLSA 3 1 1 "+tlsaData,
		"partial.test. MX 10 mx1.partial.test.", "partial.test. MX 20 mx2.partial.test.",
		"mx1.partial.test. A 127.0.0.1", "mx2.partial.test. A 127.0.0.1",
		`_mta-sts.partial.test. TXT "v=STSv1; id=1;"`, "mta-sts.partial.test. A 127.0.0.1",
		"_25._tcp.mx1.partial.test. TLSA 1 1 1 "+tlsaData,
		"broken.test. MX 10 mx.broken.test.", "mx.broken.test. A 127.0.0.1",
		`_mta-sts.broken.test. TXT "v=STSv1; id=1;"`, "mta-sts.broken.test. A 127.0.0.1",
		"none.test. MX 10 mx.none.test.", "mx.none.test. A 127.0.0.1",
	)
	d.Secure("good.test", "partial.test", "broken.test")
	d.Fail("_25._tcp.mx.broken.test", dns.TypeTLSA, dnstest.Bogus)
	res, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{d.Addr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Delivery.TLSPolicy = []config.TLSPolicyRule{{Domains: []string{"override.test"}, Level: config.TLSLevelMay}}
	in := CheckInput{Resolver: res, Settings: NewSettings(cfg), DANE: true,
		Fetcher: &mtasts.Fetcher{DialContext: mtasts.NewResolverDialer(res.LookupAddrs, netipZero()), RootCAs: ca.Pool, Port: port}}

	lines := func(domain string) map[string]dnscheck.Check {
		out := map[string]dnscheck.Check{}
		for _, c := range CheckDomain(context.Background(), in, domain) {
			out[c.ID] = c
		}
		return out
	}
	expect := func(c dnscheck.Check, status dnscheck.Status, says string) {
		t.Helper()
		if c.Status != status || !strings.Contains(c.Detail+" "+c.Fix, says) {
			t.Errorf("%s: %s %q (fix %q); want %s saying %q", c.ID, c.Status, c.Detail, c.Fix, status, says)
		}
	}
	good := lines("good.test")
	expect(good["mta-sts:good.test"], dnscheck.StatusPass, "ptrelay delivers only to these hosts")
	expect(good["dane:mx.good.test"], dnscheck.StatusPass, "1 usable")
	partial := lines("partial.test")
	expect(partial["mta-sts:partial.test"], dnscheck.StatusFail, "not listed, never used: mx2.partial.test")
	expect(partial["dane:mx1.partial.test"], dnscheck.StatusFail, "none usable")
	broken := lines("broken.test")
	expect(broken["mta-sts:broken.test"], dnscheck.StatusFail, "cannot be fetched")
	expect(broken["dane:mx.broken.test"], dnscheck.StatusFail, "TLSA lookup failed")
	none := lines("none.test")
	expect(none["mta-sts:none.test"], dnscheck.StatusNone, "publishes no MTA-STS policy")
	expect(none["dane:none.test"], dnscheck.StatusNone, "not DNSSEC-signed")
	override := lines("override.test")
	expect(override["tls-policy:override.test"], dnscheck.StatusPass, `level "may"`)

	for _, c := range []struct {
		st      dnscheck.DNSSECStatus
		enabled bool
		want    dnscheck.Status
	}{
		{dnscheck.DNSSECStatus{Validating: true, Detail: "x"}, true, dnscheck.StatusPass},
		{dnscheck.DNSSECStatus{Detail: "no AD", Fix: dnscheck.DNSSECFix}, true, dnscheck.StatusFail},
		{dnscheck.DNSSECStatus{Temporary: true}, true, dnscheck.StatusTempError},
		{dnscheck.DNSSECStatus{Validating: true}, false, dnscheck.StatusNone},
	} {
		if got := DNSSECCheck(c.st, c.enabled); got.Status != c.want || got.Blocking {
			t.Errorf("DNSSECCheck(%+v, %v) = %+v; want %s, never blocking", c.st, c.enabled, got, c.want)
		}
	}
}

func netipZero() netip.Addr { return netip.Addr{} }
