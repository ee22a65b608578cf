package dnscheck

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configures a Checker. The fields mirror the [egress] keys plus the two names being judged.
type Options struct {
	Resolver Lookuper // required
	Hostname string   // hostname: our EHLO name
	Domain   string   // the sending domain (PTR in it, SPF of it); empty: those checks are skipped
	// EgressIP is egress.ip (one address, or one per family separated by a comma); empty: discover.
	EgressIP  string
	Discovery []string // egress.discovery: "dns", "local"
	Whoami    []string // egress.whoami: host:port
	DNSBL     []string // egress.dnsbl zones
	// Port25Probe is egress.port25_probe (host:port); empty: not probed.
	Port25Probe   string
	CheckInterval time.Duration // egress.check_interval; zero: 10m

	// Families to judge; empty: IPv4 and IPv6.
	Families []Family
	// Timeout bounds whoami queries and the port-25 probe; zero: 5s.
	Timeout time.Duration
	// EgressPoll is how often the egress address is rediscovered between full checks, so that a new address is
	// judged at once; zero: a minute (or CheckInterval when shorter). Not used with a static EgressIP.
	EgressPoll time.Duration
	// LocalTargets overrides where "local" discovery routes toward (tests); see EgressOptions.
	LocalTargets map[Family]string
	Logger       *slog.Logger
	// OnChange, when set, is called after a run whose verdict differs from the previous one of that family.
	OnChange func(prev, cur Report)
	// OnCheck, when set, is called after every run of a family (prev is zero before the first one): listings,
	// the port-25 probe and the address can change without the verdict changing.
	OnCheck func(prev, cur Report)
}

// Checker caches the egress verdict per address family and keeps it current: Run rechecks every CheckInterval,
// at once when the egress address changes, and whenever Recheck is called (after a reroute, for instance).
// Its methods are safe for concurrent use.
type Checker struct {
	o    Options
	self SelfCheckOptions
	kick chan struct{}

	runMu   sync.Mutex // one check run at a time
	mu      sync.Mutex
	reports map[Family]Report
}

// NewChecker validates o and returns a Checker with no verdict yet (unknown for every family).
func NewChecker(o Options) (*Checker, error) {
	c := &Checker{kick: make(chan struct{}, 1), reports: map[Family]Report{}}
	if err := c.setOptions(o); err != nil {
		return nil, err
	}
	return c, nil
}

// Update replaces the options (a configuration reload) and asks Run for a check at once. The cached
// verdicts stay until that check replaces them.
func (c *Checker) Update(o Options) error {
	if err := c.setOptions(o); err != nil {
		return err
	}
	c.Recheck()
	return nil
}

func (c *Checker) setOptions(o Options) error {
	if o.Resolver == nil {
		return errors.New("dnscheck: Options.Resolver is required")
	}
	if o.EgressIP != "" {
		if _, err := ParseStaticEgress(o.EgressIP); err != nil {
			return err
		}
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 10 * time.Minute
	}
	if o.EgressPoll <= 0 {
		o.EgressPoll = min(time.Minute, o.CheckInterval)
	}
	if len(o.Families) == 0 {
		o.Families = []Family{IPv4, IPv6}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	self := SelfCheckOptions{
		Resolver: o.Resolver,
		Hostname: o.Hostname,
		Domain:   o.Domain,
		Egress: EgressOptions{Static: o.EgressIP, Discovery: o.Discovery, Whoami: o.Whoami,
			LocalTargets: o.LocalTargets, Timeout: o.Timeout, Resolver: o.Resolver},
		DNSBL:       o.DNSBL,
		Port25Probe: o.Port25Probe,
		Timeout:     o.Timeout,
	}
	c.mu.Lock()
	c.o, c.self = o, self
	c.mu.Unlock()
	return nil
}

// options returns the current options (Update may replace them at any time).
func (c *Checker) options() (Options, SelfCheckOptions) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.o, c.self
}

// CheckNow runs the self-check of every family now, updates the cache and returns the reports (IPv4 first).
// Call it once at start-up, before delivery begins, so that "auto" routing starts from a real verdict.
func (c *Checker) CheckNow(ctx context.Context) []Report {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	o, self := c.options()
	var out []Report
	for _, f := range o.Families {
		cur := SelfCheck(ctx, self, f)
		c.mu.Lock()
		prev, had := c.reports[f]
		cur = hold(prev, had, cur)
		c.reports[f] = cur
		c.mu.Unlock()
		c.logChange(o, prev, had, cur)
		if o.OnCheck != nil {
			o.OnCheck(prev, cur)
		}
		out = append(out, cur)
	}
	return out
}

func (c *Checker) logChange(o Options, prev Report, had bool, cur Report) {
	if had && prev.Verdict == cur.Verdict && prev.Egress.IP == cur.Egress.IP {
		return
	}
	level := slog.LevelInfo
	if cur.Verdict != VerdictDirectOK {
		level = slog.LevelWarn
	}
	// One reason per "; " (a slice would print as [a b c], its reasons running together), and the egress
	// address as "none" with the reason when discovery found none (a zero netip.Addr prints "invalid IP").
	egress := "none"
	if cur.Egress.IP.IsValid() {
		egress = cur.Egress.IP.String()
	}
	o.Logger.Log(context.Background(), level, "egress verdict",
		"family", cur.Family.String(), "egress", egress, "verdict", string(cur.Verdict),
		"previous", string(prev.Verdict), "reasons", strings.Join(cur.Reasons, "; "), "fix", reportFix(cur))
	if o.OnChange != nil && (!had || prev.Verdict != cur.Verdict) {
		o.OnChange(prev, cur)
	}
}

// reportFix is the fix of the first check that decided the verdict as Decide does (a failure before a
// temporary error), "" when it is direct-ok.
func reportFix(r Report) string {
	if r.Verdict == VerdictDirectOK {
		return ""
	}
	for _, bad := range []func(Status) bool{
		func(s Status) bool { return s == StatusFail || s == StatusPermError },
		func(s Status) bool { return s != StatusPass },
	} {
		for _, c := range r.Checks {
			if c.Blocking && bad(c.Status) && c.Fix != "" {
				return c.Fix
			}
		}
	}
	return ""
}

// Recheck asks Run for a new check at once; it does not wait. Several calls before the check starts coalesce.
func (c *Checker) Recheck() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run keeps the verdicts current until ctx ends: a full check every CheckInterval, on Recheck, and when the
// egress address of a family changes (polled every EgressPoll). It checks at once if no check ran yet.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	none := len(c.reports) == 0
	c.mu.Unlock()
	if none {
		c.CheckNow(ctx)
	}
	o, _ := c.options()
	full := time.NewTimer(o.CheckInterval)
	defer full.Stop()
	poll := time.NewTicker(o.EgressPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-full.C:
		case <-poll.C:
			if !c.egressChanged(ctx) {
				continue
			}
		}
		c.CheckNow(ctx)
		// Intervals may have changed with Update.
		o, _ = c.options()
		full.Reset(o.CheckInterval)
		poll.Reset(o.EgressPoll)
	}
}

// egressChanged rediscovers each family's address and compares it with the cached one. A failed discovery is
// not a change (the full check will report it).
func (c *Checker) egressChanged(ctx context.Context) bool {
	o, self := c.options()
	if o.EgressIP != "" {
		return false // static: only Update changes it
	}
	for _, f := range o.Families {
		eg, err := DiscoverEgress(ctx, self.Egress, f)
		if err != nil {
			continue
		}
		c.mu.Lock()
		prev := c.reports[f].Egress.IP
		c.mu.Unlock()
		if eg.IP != prev {
			o.Logger.Info("egress address changed", "family", f.String(), "from", prev.String(), "to", eg.IP.String())
			return true
		}
	}
	return false
}

// Report returns the cached report of family f; ok is false before its first check.
func (c *Checker) Report(f Family) (r Report, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok = c.reports[f]
	return r, ok
}

// Reports returns the cached reports, IPv4 first.
func (c *Checker) Reports() []Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Report
	for _, f := range c.o.Families {
		if r, ok := c.reports[f]; ok {
			out = append(out, r)
		}
	}
	return out
}

// DirectFamilies returns the families whose verdict is direct-ok: direct delivery should use only these
// (IPv4 only when IPv6 fails the check, for instance).
func (c *Checker) DirectFamilies() []Family {
	var out []Family
	for _, r := range c.Reports() {
		if r.Verdict == VerdictDirectOK {
			out = append(out, r.Family)
		}
	}
	return out
}

// DirectOK implements relay/route.VerdictSource: ok when at least one family may deliver directly; known when
// at least one family has a verdict other than unknown.
func (c *Checker) DirectOK() (ok, known bool) {
	for _, r := range c.Reports() {
		if r.Verdict != VerdictUnknown {
			known = true
		}
		if r.Verdict == VerdictDirectOK {
			ok = true
		}
	}
	return ok, known
}

// Overall is the verdict over all families: direct-ok when any family is, else smarthost when any family
// is, else unknown. `ptrelay check` exits 0, 1 or 2 by it.
func Overall(reports []Report) Verdict {
	vs := make([]Verdict, len(reports))
	for i, r := range reports {
		vs[i] = r.Verdict
	}
	switch {
	case slices.Contains(vs, VerdictDirectOK):
		return VerdictDirectOK
	case slices.Contains(vs, VerdictSmarthost):
		return VerdictSmarthost
	}
	return VerdictUnknown
}
