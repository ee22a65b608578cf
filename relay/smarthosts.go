package relay

import (
	"time"

	"ptrelay/config"
	"ptrelay/relay/admin"
	"ptrelay/relay/alerts"
	"ptrelay/relay/metrics"
)

// The smart hosts as the admin sees them: `ptrelay status` (and the web console, through admin.Status), the
// metrics, and the alerts delivery does not raise itself (secret.expiring, and clearing the conditions of hosts a
// reload removed).

// smarthostStatus is delivery's view of each smart host, for admin.Status.
func (r *Relay) smarthostStatus() []admin.SmarthostStatus {
	var out []admin.SmarthostStatus
	for _, h := range r.scheduler.SmarthostStatus() {
		s := admin.SmarthostStatus{Name: h.Name, Address: h.Address, State: h.State, Since: h.DownSince,
			DownUntil: h.DownUntil, LimitedUntil: h.LimitedUntil, LastError: h.LastError, LastErrorAt: h.LastErrorAt,
			Sessions: h.Sessions, MaxSessions: h.MaxSessions}
		for _, b := range h.Budgets {
			s.Budgets = append(s.Budgets, admin.Budget{Kind: b.Kind, Window: admin.WindowName(b.Window),
				WindowSeconds: int64(b.Window / time.Second), Used: b.Used, Limit: b.Limit})
		}
		out = append(out, s)
	}
	return out
}

// smarthostGauges feeds ptrelay_smarthost_up, _limited and _budget_remaining at each scrape.
func (r *Relay) smarthostGauges() []metrics.SmarthostGauge {
	var out []metrics.SmarthostGauge
	for _, h := range r.smarthostStatus() {
		g := metrics.SmarthostGauge{Name: h.Name, Up: h.State != "down", Limited: !h.LimitedUntil.IsZero()}
		for _, b := range h.Budgets {
			g.Budgets = append(g.Budgets, metrics.BudgetGauge{Window: b.Kind + " " + b.Window, Remaining: b.Remaining()})
		}
		out = append(out, g)
	}
	return out
}

// secretAlerts are the secret.expiring conditions of the smart hosts whose client_secret_expires is near.
func secretAlerts(cfg *config.Config, now time.Time) []alerts.Condition {
	var conds []alerts.Condition
	for i := range cfg.Smarthosts {
		h := &cfg.Smarthosts[i]
		exp, err := h.OAuth2.SecretExpires()
		if err != nil || exp.IsZero() || h.Auth != config.AuthXOAUTH2 {
			continue
		}
		if c, ok := alerts.SecretExpiring(h.Name, exp, now); ok {
			conds = append(conds, c)
		}
	}
	return conds
}

// clearRemovedSmarthosts clears the smart-host conditions of hosts the new configuration no longer has: nothing
// will ever resolve them otherwise.
func (r *Relay) clearRemovedSmarthosts(cfg *config.Config) {
	for _, a := range r.alerts.Alerts() {
		switch a.Event {
		case alerts.EventSmarthostDown, alerts.EventSmarthostAuth, alerts.EventSecretExpiring:
			if cfg.SmarthostNamed(a.Subject) == nil {
				r.alerts.Clear(a.Event, a.Subject)
			}
		}
	}
}
