package dnscheck_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
)

func newChecker(t *testing.T, o dnscheck.Options) *dnscheck.Checker {
	t.Helper()
	c, err := dnscheck.NewChecker(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkStatus(t *testing.T, rep dnscheck.Report, id string) dnscheck.Status {
	t.Helper()
	for _, c := range rep.Checks {
		if c.ID == id {
			return c.Status
		}
	}
	t.Fatalf("no check %s in %+v", id, rep.Checks)
	return ""
}

func TestChecker_TempErrorKeepsGoodVerdict(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	var changes, checks []dnscheck.Verdict
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		Domain: "good.test", EgressIP: "127.0.0.21", Families: []dnscheck.Family{dnscheck.IPv4},
		OnChange: func(prev, cur dnscheck.Report) { changes = append(changes, cur.Verdict) },
		OnCheck:  func(prev, cur dnscheck.Report) { checks = append(checks, cur.Verdict) }})
	ctx := ctxT(t)
	if ok, known := c.DirectOK(); ok || known {
		t.Fatalf("before any check: DirectOK = %v, %v", ok, known)
	}

	reps := c.CheckNow(ctx)
	if len(reps) != 1 || reps[0].Verdict != dnscheck.VerdictDirectOK {
		t.Fatalf("first run: %+v", reps)
	}

	srv.Fail("21.0.0.127.in-addr.arpa", dns.TypePTR, dnstest.ServFail)
	rep := c.CheckNow(ctx)[0]
	if checkStatus(t, rep, "ptr") != dnscheck.StatusTempError {
		t.Fatalf("ptr check not temperror during SERVFAIL: %+v", rep.Checks)
	}
	if rep.Verdict != dnscheck.VerdictDirectOK || !rep.Held {
		t.Fatalf("SERVFAIL flipped the verdict: %s held=%v %v", rep.Verdict, rep.Held, rep.Reasons)
	}
	if ok, known := c.DirectOK(); !ok || !known {
		t.Fatalf("DirectOK during SERVFAIL = %v, %v", ok, known)
	}

	// A real answer that is bad does flip it.
	srv.Fail("21.0.0.127.in-addr.arpa", dns.TypePTR, 0)
	srv.Remove("21.0.0.127.in-addr.arpa", dns.TypePTR)
	rep = c.CheckNow(ctx)[0]
	if rep.Verdict != dnscheck.VerdictSmarthost || rep.Held {
		t.Fatalf("PTR removed: %s held=%v", rep.Verdict, rep.Held)
	}
	if ok, known := c.DirectOK(); ok || !known {
		t.Fatalf("DirectOK after PTR removed = %v, %v", ok, known)
	}
	if !slices.Equal(changes, []dnscheck.Verdict{dnscheck.VerdictDirectOK, dnscheck.VerdictSmarthost}) {
		t.Fatalf("OnChange saw %v", changes)
	}
	// OnCheck sees every run, the held one too (listings and the probe change without the verdict).
	if !slices.Equal(checks, []dnscheck.Verdict{dnscheck.VerdictDirectOK, dnscheck.VerdictDirectOK, dnscheck.VerdictSmarthost}) {
		t.Fatalf("OnCheck saw %v", checks)
	}
}

func TestChecker_TempErrorOnFirstRunIsUnknown(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	srv.Fail("21.0.0.127.in-addr.arpa", dns.TypePTR, dnstest.ServFail)
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		EgressIP: "127.0.0.21", Families: []dnscheck.Family{dnscheck.IPv4}})
	rep := c.CheckNow(ctxT(t))[0]
	if rep.Verdict != dnscheck.VerdictUnknown || rep.Held {
		t.Fatalf("got %s held=%v", rep.Verdict, rep.Held)
	}
	if ok, known := c.DirectOK(); ok || known {
		t.Fatalf("DirectOK = %v, %v", ok, known)
	}
}

func TestChecker_PerFamily(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		Domain: "good.test", EgressIP: "127.0.0.21, ::1"})
	reps := c.CheckNow(ctxT(t))
	if len(reps) != 2 || reps[0].Family != dnscheck.IPv4 || reps[1].Family != dnscheck.IPv6 {
		t.Fatalf("reports %+v", reps)
	}
	if reps[0].Verdict != dnscheck.VerdictDirectOK || reps[1].Verdict != dnscheck.VerdictSmarthost {
		t.Fatalf("verdicts v4=%s v6=%s (%v)", reps[0].Verdict, reps[1].Verdict, reps[1].Reasons)
	}
	if checkStatus(t, reps[1], "ptr") != dnscheck.StatusPermError {
		t.Fatalf("::1 has no PTR in the zone: %+v", reps[1].Checks)
	}
	if got := c.DirectFamilies(); !slices.Equal(got, []dnscheck.Family{dnscheck.IPv4}) {
		t.Fatalf("DirectFamilies = %v", got)
	}
	if ok, known := c.DirectOK(); !ok || !known {
		t.Fatalf("DirectOK = %v, %v", ok, known)
	}
	if v := dnscheck.Overall(reps); v != dnscheck.VerdictDirectOK {
		t.Fatalf("Overall = %s", v)
	}
	if rep, ok := c.Report(dnscheck.IPv6); !ok || rep.Egress.IP != netip.MustParseAddr("::1") {
		t.Fatalf("Report(IPv6) = %+v, %v", rep, ok)
	}
}

func TestChecker_NoEgressOfFamily(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), EgressIP: "127.0.0.21"})
	reps := c.CheckNow(ctxT(t))
	if reps[1].Verdict != dnscheck.VerdictUnknown || checkStatus(t, reps[1], "egress") != dnscheck.StatusPermError {
		t.Fatalf("v6 without a static address: %+v", reps[1])
	}
}

// runChecker starts Run and stops it (waiting for it) at the end of the test.
func runChecker(t *testing.T, c *dnscheck.Checker) {
	testkit.Serve(t, "Checker.Run", func(ctx context.Context) error { c.Run(ctx); return nil })
}

func TestChecker_EgressChangeTriggersCheck(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	var current atomic.Value
	current.Store("127.0.0.21")
	srv.Dynamic(dnscheck.WhoamiOpenDNS, func(from netip.AddrPort, q dns.Question) []string {
		return []string{fmt.Sprintf("%s 0 IN A %s", q.Name, current.Load())}
	})
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		Discovery: []string{"dns"}, Whoami: []string{srv.Addr()}, Families: []dnscheck.Family{dnscheck.IPv4},
		CheckInterval: time.Hour, EgressPoll: 20 * time.Millisecond, Timeout: time.Second})
	runChecker(t, c)
	testkit.WaitFor(t, 10*time.Second, "first verdict", func() bool {
		r, ok := c.Report(dnscheck.IPv4)
		return ok && r.Verdict == dnscheck.VerdictDirectOK
	})

	current.Store("127.0.0.22") // the ISP hands out a new address, one without a PTR
	testkit.WaitFor(t, 10*time.Second, "verdict for the new address", func() bool {
		r, _ := c.Report(dnscheck.IPv4)
		return r.Egress.IP == netip.MustParseAddr("127.0.0.22") && r.Verdict == dnscheck.VerdictSmarthost
	})
}

func TestChecker_Recheck(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		EgressIP: "127.0.0.25", Families: []dnscheck.Family{dnscheck.IPv4}, CheckInterval: time.Hour})
	runChecker(t, c)
	testkit.WaitFor(t, 10*time.Second, "first verdict", func() bool {
		r, ok := c.Report(dnscheck.IPv4)
		return ok && r.Verdict == dnscheck.VerdictDirectOK
	})
	srv.Remove("relay.good.test", dns.TypeA) // FCrDNS now fails
	c.Recheck()
	testkit.WaitFor(t, 10*time.Second, "verdict after Recheck", func() bool {
		r, _ := c.Report(dnscheck.IPv4)
		return r.Verdict == dnscheck.VerdictSmarthost
	})
	r, _ := c.Report(dnscheck.IPv4)
	if checkStatus(t, r, "fcrdns") != dnscheck.StatusFail {
		t.Fatalf("fcrdns after removal: %+v", r.Checks)
	}
}

func TestNewChecker_Validation(t *testing.T) {
	if _, err := dnscheck.NewChecker(dnscheck.Options{}); err == nil {
		t.Error("no resolver accepted")
	}
	srv := dnstest.New(t)
	if _, err := dnscheck.NewChecker(dnscheck.Options{Resolver: newResolver(t, srv.Addr()), EgressIP: "nope"}); err == nil {
		t.Error("bad egress.ip accepted")
	}
}

// A configuration reload with another egress.ip is judged at once, without a restart.
func TestChecker_UpdateOnReload(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	o := dnscheck.Options{Resolver: newResolver(t, srv.Addr()), Hostname: "mail.good.test",
		EgressIP: "127.0.0.21", Families: []dnscheck.Family{dnscheck.IPv4}, CheckInterval: time.Hour}
	c := newChecker(t, o)
	runChecker(t, c)
	testkit.WaitFor(t, 10*time.Second, "first verdict", func() bool {
		r, ok := c.Report(dnscheck.IPv4)
		return ok && r.Verdict == dnscheck.VerdictDirectOK
	})
	o.EgressIP = "127.0.0.22"
	if err := c.Update(o); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "verdict after Update", func() bool {
		r, _ := c.Report(dnscheck.IPv4)
		return r.Egress.IP == netip.MustParseAddr("127.0.0.22") && r.Verdict == dnscheck.VerdictSmarthost
	})
	o.EgressIP = "not an address"
	if err := c.Update(o); err == nil {
		t.Fatal("Update accepted a bad egress.ip")
	}
}
