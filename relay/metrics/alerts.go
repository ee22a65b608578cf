package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// alertMetrics count what the alert manager tells the admin, and show which conditions hold.
type alertMetrics struct {
	notices *prometheus.CounterVec
	firing  *prometheus.GaugeVec

	mu   sync.Mutex
	seen map[string]bool // events ever set, so that one that stopped firing drops to 0
}

func newAlertMetrics() *alertMetrics {
	return &alertMetrics{
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_alert_notices_total",
			Help: "Alert notices by event (verdict, listed, queue.oldest, ..., test, digest), channel (mail, webhook) and outcome (sent, queued, retried, failed).",
		}, []string{"event", "channel", "outcome"}),
		firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ptrelay_alerts_firing",
			Help: "Alert conditions that hold now (past their hold-down), by event.",
		}, []string{"event"}),
		seen: map[string]bool{},
	}
}

func (a *alertMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.notices, a.firing}
}

// AlertNotice counts one alert notice on one channel by its outcome. event and outcome are fixed words chosen
// by the alert manager, never text from outside.
func (m *Metrics) AlertNotice(event, channel, outcome string) {
	if m == nil {
		return
	}
	m.alerts.notices.WithLabelValues(event, channel, outcome).Inc()
}

// AlertsFiring sets the number of firing conditions per event; events missing from byEvent drop to 0.
func (m *Metrics) AlertsFiring(byEvent map[string]int) {
	if m == nil {
		return
	}
	a := m.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	for e := range byEvent {
		a.seen[e] = true
	}
	for e := range a.seen {
		a.firing.WithLabelValues(e).Set(float64(byEvent[e]))
	}
}
