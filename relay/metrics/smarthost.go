package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// SmarthostGauge is one smart host's health and budgets at scrape time, as the daemon reads them from delivery.
type SmarthostGauge struct {
	Name    string
	Up      bool // up, limited or probing; false while down
	Limited bool // over a sending budget, or refused for its quota
	Budgets []BudgetGauge
}

// BudgetGauge is what one sending window still allows. Window names it as `ptrelay status` does: "msg 1m",
// "rcpt 24h".
type BudgetGauge struct {
	Window    string
	Remaining int
}

// smarthostCollector reads the smart hosts' state at scrape time (ptrelay_smarthost_up, _limited,
// _budget_remaining); their deliveries are counted as they happen (ptrelay_smarthost_deliveries_total).
type smarthostCollector struct {
	up, limited, budget *prometheus.Desc

	mu    sync.Mutex
	state func() []SmarthostGauge
}

func newSmarthostCollector() *smarthostCollector {
	return &smarthostCollector{
		up: prometheus.NewDesc("ptrelay_smarthost_up",
			"1 while the smart host takes mail (up, limited or due for its probe), 0 while it is down after failures.", []string{"name"}, nil),
		limited: prometheus.NewDesc("ptrelay_smarthost_limited",
			"1 while the smart host is over one of its sending budgets or refused for its quota.", []string{"name"}, nil),
		budget: prometheus.NewDesc("ptrelay_smarthost_budget_remaining",
			"What a sending window of the smart host still allows (message_rate, recipient_rate).", []string{"name", "window"}, nil),
	}
}

func (c *smarthostCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.limited
	ch <- c.budget
}

func (c *smarthostCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f := c.state
	c.mu.Unlock()
	if f == nil {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, h := range f() {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b(h.Up), h.Name)
		ch <- prometheus.MustNewConstMetric(c.limited, prometheus.GaugeValue, b(h.Limited), h.Name)
		for _, w := range h.Budgets {
			ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, float64(w.Remaining), h.Name, w.Window)
		}
	}
}

// SetSmarthosts installs the function read at every scrape for the smart hosts' gauges. It is called from the
// scrape goroutine, so it must be safe for concurrent use.
func (m *Metrics) SetSmarthosts(f func() []SmarthostGauge) {
	if m == nil {
		return
	}
	m.smarthosts.mu.Lock()
	m.smarthosts.state = f
	m.smarthosts.mu.Unlock()
}

// SmarthostDelivery counts one recipient attempt through smart host name, by outcome (sent, deferred, bounced,
// expired).
func (m *Metrics) SmarthostDelivery(name, outcome string) {
	if m == nil || name == "" {
		return
	}
	m.smarthostDeliveries.WithLabelValues(name, outcome).Inc()
}
