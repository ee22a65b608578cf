package dnscheck_test

import (
	"context"
	"strings"
	"testing"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

// TestCheckMX: the sending domain's MX line of the checklist, for a good domain, an MX host without an
// address, a domain without MX (its own address), and a domain that does not exist.
func TestCheckMX(t *testing.T) {
	srv := dnstest.New(t,
		"good.test. MX 10 mx.good.test.", "mx.good.test. A 192.0.2.10",
		"half.test. MX 10 mx.half.test.", "half.test. MX 20 gone.half.test.", "mx.half.test. A 192.0.2.11",
		"plain.test. A 192.0.2.12")
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		domain string
		status dnscheck.Status
		detail string
		fix    string
	}{
		{"good.test", dnscheck.StatusPass, "mx.good.test (10) -> 192.0.2.10", ""},
		{"half.test", dnscheck.StatusFail, "gone.half.test (20) -> ", "Give every MX host of half.test an A (or AAAA) record."},
		{"plain.test", dnscheck.StatusPass, "plain.test (no MX: the domain's own address) -> 192.0.2.12", ""},
		{"missing.test", dnscheck.StatusPermError, "NXDOMAIN", "Publish an MX record for missing.test"},
	} {
		got := dnscheck.CheckMX(context.Background(), r, c.domain)
		if got.ID != "mx:"+c.domain || got.Status != c.status || !strings.Contains(got.Detail, c.detail) || !strings.Contains(got.Fix, c.fix) {
			t.Errorf("%s: %+v, want %s with %q and fix %q", c.domain, got, c.status, c.detail, c.fix)
		}
	}
}
