package dnscheck_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
)

// The words of the checklist say what was found: these were unclear to an admin (issue: "a new admin").
func TestWording_Checks(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	r := newResolver(t, srv.Addr())
	check := func(ip, id string) dnscheck.Check {
		t.Helper()
		rep := dnscheck.SelfCheck(ctxT(t), dnscheck.SelfCheckOptions{Resolver: r, Hostname: "mail.good.test",
			Domain: "good.test", Egress: dnscheck.EgressOptions{Static: ip}, DNSBL: []string{"zen.spamhaus.org"},
			Timeout: 2 * time.Second}, dnscheck.IPv4)
		for _, c := range rep.Checks {
			if c.ID == id {
				return c
			}
		}
		t.Fatalf("%s: no check %s", ip, id)
		return dnscheck.Check{}
	}

	// A listing reads "is listed in ...: PBL ...", never "not listed in ...: listed: PBL".
	pbl := check("127.0.0.26", "dnsbl:zen.spamhaus.org")
	if line := pbl.Title + ": " + pbl.Detail; line != "127.0.0.26 is listed in zen.spamhaus.org: PBL: end-user (dynamic) range, listed by Spamhaus (127.0.0.11)" {
		t.Errorf("PBL line %q", line)
	}
	if ok := check("127.0.0.21", "dnsbl:zen.spamhaus.org"); ok.Title != "127.0.0.21 not listed in zen.spamhaus.org" {
		t.Errorf("pass line %q", ok.Title)
	}
	if refused := check("127.0.0.27", "dnsbl:zen.spamhaus.org"); strings.Contains(refused.Title, "not listed") {
		t.Errorf("cannot-tell line %q", refused.Title+": "+refused.Detail)
	}

	// A generic, dynamic PTR name is never offered as the hostname to adopt.
	gen := check("127.0.0.23", "hostname")
	if strings.Contains(gen.Fix, `hostname = "127-0-0-23.dyn.isp.test"`) || !strings.Contains(gen.Fix, "mail.good.test") ||
		!strings.Contains(gen.Fix, "smart host") {
		t.Errorf("hostname fix for a dynamic PTR: %q", gen.Fix)
	}
	// A proper PTR name in our domain still is.
	if own := check("127.0.0.25", "hostname"); !strings.Contains(own.Fix, `hostname = "relay.good.test"`) {
		t.Errorf("hostname fix for a PTR in our domain: %q", own.Fix)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The "egress verdict" log line: reasons apart, and no "invalid IP" for an address that was not found.
func TestWording_VerdictLogLine(t *testing.T) {
	srv := dnstest.New(t, egressZone...)
	var log syncBuf
	c := newChecker(t, dnscheck.Options{Resolver: newResolver(t, srv.Addr()), EgressIP: "127.0.0.23",
		Hostname: "mail.good.test", Domain: "good.test", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	c.CheckNow(ctxT(t))
	out := log.String()
	if strings.Contains(out, "invalid IP") || !strings.Contains(out, "family=ipv6 egress=none") {
		t.Errorf("the IPv6 line shows no address as %q:\n%s", "invalid IP", out)
	}
	if !strings.Contains(out, `reasons="PTR name does not look dynamic or generic: 127-0-0-23.dyn.isp.test looks like`) ||
		strings.Contains(out, "reasons=\"[") || !strings.Contains(out, "fix=\"Ask your ISP for a static IP") {
		t.Errorf("reasons or fix of the IPv4 line:\n%s", out)
	}
}
