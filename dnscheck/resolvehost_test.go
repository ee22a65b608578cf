package dnscheck_test

import (
	"context"
	"slices"
	"testing"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

// TestResolveHost: IP literals and localhost never reach the resolver; names go to the configured one. The DNS
// server answers every other name NXDOMAIN and counts the queries.
func TestResolveHost(t *testing.T) {
	srv := dnstest.New(t, "smtp.isp.test. A 192.0.2.25", "smtp.isp.test. AAAA 2001:db8::25")
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := map[string]bool{"smtp.isp.test": true, "smtp.isp.test.": true}
	for host, want := range map[string][]string{
		"192.168.1.5":      {"192.168.1.5"},
		"2001:db8::7":      {"2001:db8::7"},
		"[2001:db8::7]":    {"2001:db8::7"},
		"::ffff:192.0.2.9": {"192.0.2.9"},
		"localhost":        {"127.0.0.1", "::1"},
		"relay.localhost.": {"127.0.0.1", "::1"},
		"smtp.isp.test":    {"192.0.2.25", "2001:db8::25"},
		"smtp.isp.test.":   {"192.0.2.25", "2001:db8::25"},
	} {
		before := len(srv.Queries())
		addrs, err := dnscheck.ResolveHost(ctx, r, host)
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", host, got, want)
		}
		if asked := len(srv.Queries()) != before; asked != names[host] {
			t.Errorf("%s: the resolver was asked: %v, want %v", host, asked, names[host])
		}
	}
	if _, err := dnscheck.ResolveHost(ctx, r, "nowhere.test"); err == nil {
		t.Error("a missing name resolved")
	}
}
