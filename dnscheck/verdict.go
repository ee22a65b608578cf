package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Verdict says whether this host is fit to deliver directly to receivers' MX hosts.
type Verdict string

const (
	VerdictDirectOK  Verdict = "direct-ok" // receivers will accept direct mail from the egress address
	VerdictSmarthost Verdict = "smarthost" // they will refuse it (no PTR, generic name, PBL, port 25 blocked...)
	VerdictUnknown   Verdict = "unknown"   // cannot tell (DNS unreachable, no egress address of this family)
)

// Report is the self-check of one address family.
type Report struct {
	Family  Family    `json:"family"`
	Egress  Egress    `json:"egress"`
	Checks  []Check   `json:"checks"`
	Verdict Verdict   `json:"verdict"`
	Reasons []string  `json:"reasons,omitempty"`
	At      time.Time `json:"at"`
	// Held: this run could not finish for a temporary reason (a SERVFAIL, a whoami timeout), so the verdict and
	// egress address are those of the previous run: one DNS hiccup must not flip the route.
	Held bool `json:"held,omitempty"`
	// temporary: the verdict is unknown for a temporary reason only (what Held may replace).
	temporary bool
}

// Decide aggregates checks: any blocking check that fails (fail or permerror) means smarthost, with those
// checks as the reasons; otherwise a blocking temperror means unknown; otherwise direct-ok. Non-blocking checks
// (hostname, PTR domain, SPF, a refused DNSBL query) are warnings and never decide.
func Decide(checks []Check) (Verdict, []string) {
	var bad, temp []string
	for _, c := range checks {
		if !c.Blocking {
			continue
		}
		switch c.Status {
		case StatusFail, StatusPermError:
			bad = append(bad, c.Title+": "+c.Detail)
		case StatusTempError:
			temp = append(temp, c.Title+": "+c.Detail)
		}
	}
	switch {
	case len(bad) > 0:
		return VerdictSmarthost, bad
	case len(temp) > 0:
		return VerdictUnknown, temp
	}
	return VerdictDirectOK, nil
}

// SelfCheckOptions are the inputs of one self-check run.
type SelfCheckOptions struct {
	Resolver Lookuper
	Hostname string // our EHLO name (the PTR should be this)
	Domain   string // the sending domain (the PTR should be in it; its SPF should authorise us)
	Egress   EgressOptions
	DNSBL    []string // zones, e.g. zen.spamhaus.org
	// Port25Probe is host:port to try a TCP connection to; empty: skipped.
	Port25Probe string
	Timeout     time.Duration // for the port-25 probe; zero: 5s
}

// SelfCheck discovers the egress address of family f and runs every check on it.
func SelfCheck(ctx context.Context, o SelfCheckOptions, f Family) Report {
	rep := Report{Family: f, At: time.Now()}
	if o.Egress.Resolver == nil {
		o.Egress.Resolver = o.Resolver
	}
	eg, err := DiscoverEgress(ctx, o.Egress, f)
	ec := Check{ID: "egress", Title: f.String() + " egress address", Blocking: true}
	switch {
	case err != nil && f == IPv6 && errors.Is(err, ErrNoRoute):
		// An IPv4-only network: nothing to judge, nothing to fix, and not worth a warning.
		ec.Status = StatusNone
		ec.Detail = "this machine has no IPv6 route: harmless on an IPv4-only network, where mail leaves over IPv4"
		ec.Fix = "Nothing to do. If this network has IPv6, check the machine's IPv6 route (ip -6 route)."
		rep.Checks = []Check{ec}
		rep.Verdict, rep.Reasons = VerdictUnknown, []string{ec.Detail}
		return rep
	case err != nil:
		ec.Status, ec.Detail = StatusTempError, err.Error()
		ec.Fix = "Set egress.ip, or let the whoami servers in egress.whoami be reached over UDP port 53."
		if errors.Is(err, ErrNoEgress) && o.Egress.Static != "" {
			ec.Status, ec.Fix = StatusPermError, "Add this family's address to egress.ip if mail should leave over it."
		}
		rep.Checks = []Check{ec}
		rep.Verdict, rep.Reasons = VerdictUnknown, []string{ec.Detail}
		rep.temporary = ec.Status == StatusTempError
		return rep
	case eg.Private:
		ec.Status = StatusPermError
		ec.Detail = fmt.Sprintf("%s (from the kernel) is a private address: the public one is not known", eg.IP)
		ec.Fix = "Set egress.ip to your public address, or put \"dns\" in egress.discovery."
		rep.Egress, rep.Checks = eg, []Check{ec}
		rep.Verdict, rep.Reasons = VerdictUnknown, []string{ec.Detail}
		return rep
	}
	rep.Egress = eg
	ec.Status, ec.Detail = StatusPass, fmt.Sprintf("%s (%s)", eg.IP, describeEgress(eg))
	rep.Checks = append(rep.Checks, ec)
	rep.Checks = append(rep.Checks, CheckPTR(ctx, o.Resolver, eg.IP, o.Hostname, o.Domain).Checks...)
	for _, zone := range o.DNSBL {
		rep.Checks = append(rep.Checks, CheckDNSBL(ctx, o.Resolver, eg.IP, zone).Check)
	}
	if o.Port25Probe != "" {
		rep.Checks = append(rep.Checks, CheckPort25(ctx, o.Resolver, o.Port25Probe, f, o.Timeout))
	}
	if o.Domain != "" {
		rep.Checks = append(rep.Checks, CheckSPF(ctx, o.Resolver, o.Domain, eg.IP, "the egress address"))
	}
	rep.Verdict, rep.Reasons = Decide(rep.Checks)
	rep.temporary = rep.Verdict == VerdictUnknown
	return rep
}

func describeEgress(e Egress) string {
	switch e.Method {
	case "static":
		return "egress.ip"
	case "dns":
		return "whoami " + e.Source
	}
	return "kernel source address toward " + e.Source
}

// hold applies the no-flapping rule: a run that is unknown only for temporary reasons keeps the previous known
// verdict for the same (or an undiscoverable) egress address.
func hold(prev Report, hadPrev bool, cur Report) Report {
	if !hadPrev || prev.Verdict == VerdictUnknown || cur.Verdict != VerdictUnknown || !cur.temporary {
		return cur
	}
	if cur.Egress.IP.IsValid() && cur.Egress.IP != prev.Egress.IP {
		return cur
	}
	cur.Held = true
	cur.Verdict = prev.Verdict
	cur.Egress = prev.Egress
	cur.Reasons = append([]string{"kept the previous verdict: this run hit a temporary error"}, cur.Reasons...)
	return cur
}
