package dnscheck_test

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

func TestCheckPort25(t *testing.T) {
	open := smtpListener(t)
	_, port, _ := net.SplitHostPort(open)
	closed := closedTCP(t)
	srv := dnstest.New(t, "probe.test. A 127.0.0.1")
	srv.Fail("flaky.test", dns.TypeA, dnstest.ServFail)
	r := newResolver(t, srv.Addr())
	cases := []struct {
		name, probe string
		want        dnscheck.Status
		blocking    bool
	}{
		{"Open", open, dnscheck.StatusPass, true},
		{"ByName", net.JoinHostPort("probe.test", port), dnscheck.StatusPass, true},
		{"Refused", closed, dnscheck.StatusFail, true},
		{"NameFails", net.JoinHostPort("flaky.test", port), dnscheck.StatusTempError, true},
		{"NoSuchName", net.JoinHostPort("nosuch.test", port), dnscheck.StatusPermError, false},
		{"NoPort", "probe.test", dnscheck.StatusPermError, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := dnscheck.CheckPort25(ctxT(t), r, c.probe, dnscheck.IPv4, 2*time.Second)
			if got.Status != c.want || got.Blocking != c.blocking {
				t.Fatalf("got %+v, want %s blocking=%v", got, c.want, c.blocking)
			}
			if got.Status != dnscheck.StatusPass && got.Fix == "" {
				t.Fatalf("no fix: %+v", got)
			}
		})
	}
}

// closedTCP returns a loopback address where nothing listens (it was free a moment ago).
func closedTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
