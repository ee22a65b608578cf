package relay

import (
	"context"
	"slices"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/relay/admin"
)

// firstVerdictBound caps how long delivery waits for the first egress verdict at start-up (DNS unreachable).
const firstVerdictBound = 30 * time.Second

// checkerOptions maps the [egress] keys onto the checker. The sending domain (config.SendingDomain) is the
// domain of hostname: the PTR should be in it and its SPF should authorise us.
func (r *Relay) checkerOptions(cfg *config.Config) dnscheck.Options {
	return dnscheck.Options{
		Resolver:      r.resolver,
		Hostname:      cfg.Hostname,
		Domain:        cfg.SendingDomain(),
		EgressIP:      cfg.Egress.IP,
		Discovery:     cfg.Egress.Discovery,
		Whoami:        cfg.Egress.Whoami,
		DNSBL:         cfg.Egress.DNSBL,
		Port25Probe:   cfg.Egress.Port25Probe,
		CheckInterval: cfg.Egress.CheckInterval.D(),
		Timeout:       cfg.DNS.Timeout.D(),
		Logger:        component(r.opts.Log, "egress"),
		OnChange:      r.verdictChanged,
		OnCheck:       r.egressChecked,
	}
}

// verdictChanged keeps the metrics current and says loudly when mail will go out directly from an address
// that receivers refuse because no smart host is configured.
func (r *Relay) verdictChanged(prev, cur dnscheck.Report) {
	if prev.Verdict != "" {
		r.metrics.SetVerdict(prev.Family.String(), string(prev.Verdict))
	}
	r.metrics.SetVerdict(cur.Family.String(), string(cur.Verdict))
	cfg := r.cfg.Load()
	if cur.Verdict == dnscheck.VerdictSmarthost && !cfg.HasSmarthosts() && cfg.EffectiveRoutingMode() != config.RoutingSmarthost {
		r.log.Warn("receivers will likely refuse mail from this address, and no smart host is configured: delivering directly anyway; configure [[smarthosts]] or fix the DNS (run `ptrelay check`)",
			"family", cur.Family.String(), "egress", cur.Egress.IP.String(), "reasons", strings.Join(cur.Reasons, "; "))
	}
}

// verdictGatesDelivery reports whether routing depends on the verdict, so delivery must wait for the first one.
func verdictGatesDelivery(cfg *config.Config) bool {
	return cfg.HasSmarthosts() && cfg.EffectiveRoutingMode() == config.RoutingAuto
}

// startChecker computes the first verdict (waiting for it when routing depends on it) and keeps it current.
func (r *Relay) startChecker(ctx context.Context) {
	if verdictGatesDelivery(r.cfg.Load()) {
		first, cancel := context.WithTimeout(ctx, firstVerdictBound)
		r.checker.CheckNow(first)
		cancel()
	}
	go r.checker.Run(ctx)
}

// egressStatus reports the egress verdict per address family for `ptrelay status`.
func (r *Relay) egressStatus() []admin.EgressStatus {
	noSmarthost := !r.cfg.Load().HasSmarthosts()
	var out []admin.EgressStatus
	for _, rep := range r.checker.Reports() {
		es := admin.EgressStatus{Family: rep.Family.String(), Verdict: string(rep.Verdict), Checked: rep.At}
		es.Reasons = append(es.Reasons, rep.Reasons...)
		es.Fixes = egressFixes(rep)
		if rep.Verdict == dnscheck.VerdictSmarthost && noSmarthost {
			es.Reasons = append(es.Reasons, "no smart host is configured: delivering directly anyway (configure [[smarthosts]] or fix the above)")
		}
		if rep.Egress.IP.IsValid() {
			es.IP = rep.Egress.IP.String()
		}
		out = append(out, es)
	}
	return out
}

// egressFixes are the fix sentences of the checks behind the verdict's reasons (the blocking checks that did not
// pass), each once.
func egressFixes(rep dnscheck.Report) []string {
	var out []string
	for _, c := range rep.Checks {
		if !c.Blocking || c.Fix == "" || c.Status == dnscheck.StatusPass || c.Status == dnscheck.StatusNone {
			continue
		}
		if !slices.Contains(out, c.Fix) {
			out = append(out, c.Fix)
		}
	}
	return out
}
