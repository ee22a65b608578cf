package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// States are always exported, even at zero, so a graph or alert does not see a series vanish when a state
// empties. They are the queue's state words (queue.State), repeated here so this package needs no import.
var queueStates = []string{"queued", "active", "deferred", "hold", "delivered", "bounced"}

// queueCollector reads the queue at scrape time rather than being told about every transition: the queue is
// the truth, and a counter kept beside it would drift after a crash or an admin's delete.
type queueCollector struct {
	recipients *prometheus.Desc
	oldest     *prometheus.Desc
	now        func() time.Time

	mu    sync.Mutex
	stats func() (map[string]int, time.Time)
}

func newQueueCollector(now func() time.Time) *queueCollector {
	return &queueCollector{
		recipients: prometheus.NewDesc("ptrelay_queue_recipients",
			"Recipients in the queue by state.", []string{"state"}, nil),
		oldest: prometheus.NewDesc("ptrelay_queue_oldest_message_age_seconds",
			"Age of the oldest message in the queue; 0 when the queue is empty.", nil, nil),
		now: now,
	}
}

func (c *queueCollector) set(f func() (map[string]int, time.Time)) {
	c.mu.Lock()
	c.stats = f
	c.mu.Unlock()
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.recipients
	ch <- c.oldest
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f := c.stats
	c.mu.Unlock()
	if f == nil {
		// No queue attached yet (start-up): export nothing rather than zeros that would look like an empty queue.
		return
	}
	byState, oldest := f()
	if byState == nil {
		// The queue could not be read: leave the gauges out of this scrape (Prometheus marks them stale)
		// rather than report an empty queue.
		return
	}
	done := map[string]bool{}
	for _, s := range queueStates {
		ch <- prometheus.MustNewConstMetric(c.recipients, prometheus.GaugeValue, float64(byState[s]), s)
		done[s] = true
	}
	for s, n := range byState {
		if !done[s] {
			ch <- prometheus.MustNewConstMetric(c.recipients, prometheus.GaugeValue, float64(n), s)
		}
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(c.now().Sub(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}
