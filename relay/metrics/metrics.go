// Package metrics owns ptrelay's Prometheus metrics: their names, labels and buckets, the registry they live
// in, and the /metrics HTTP endpoint. The relay's inbound, delivery and egress code report events through the
// methods of *Metrics; the queue gauges are read at scrape time through a function the relay provides. The
// package knows nothing of SMTP, the queue store or DNS: it receives plain strings and numbers.
//
// Naming follows Prometheus conventions: the ptrelay_ prefix, _total for counters, _seconds for durations.
// Each Metrics has its own registry (no global state), so tests and several relays in one process do not mix.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every ptrelay metric. A nil *Metrics is valid and records nothing, so callers need no checks
// when metrics are disabled.
type Metrics struct {
	reg *prometheus.Registry

	accepted      prometheus.Counter
	acceptedBytes prometheus.Counter
	refused       *prometheus.CounterVec
	sessions      prometheus.Gauge
	sessionsTotal prometheus.Counter
	deliveries    *prometheus.CounterVec
	reroutes      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	verdict       *prometheus.GaugeVec
	queue         *queueCollector
	alerts        *alertMetrics
	tls           *tlsMetrics
	dkim          *dkimMetrics
	smarthosts    *smarthostCollector

	smarthostDeliveries *prometheus.CounterVec

	mu       sync.Mutex
	verdicts map[string]map[string]bool // family -> every verdict ever set, so old ones can drop to 0
}

// DeliveryBuckets are the delivery duration histogram's upper bounds in seconds: from a fast LAN smart host
// (tens of ms) to a slow remote MX near the SMTP timeouts (minutes).
var DeliveryBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400}

// New creates the metrics in a fresh registry, together with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ptrelay_messages_accepted_total",
			Help: "Messages accepted from clients and durably queued (each got 250 after DATA).",
		}),
		acceptedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ptrelay_messages_accepted_bytes_total",
			Help: "Bytes of accepted messages as the client sent them (before the headers ptrelay adds).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_messages_refused_total",
			Help: "Messages or recipients refused to clients, by reason (relay_denied, too_big, too_many_recipients, bare_newline, storage, auth_failed ...).",
		}, []string{"reason"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ptrelay_inbound_sessions",
			Help: "Inbound SMTP sessions open now.",
		}),
		sessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ptrelay_inbound_sessions_total",
			Help: "Inbound SMTP sessions opened since start.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_deliveries_total",
			Help: "Recipient delivery attempts by route (direct, smarthost) and outcome (sent, deferred, bounced, rerouted, expired).",
		}, []string{"route", "outcome"}),
		reroutes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_reroutes_total",
			Help: "Direct deliveries refused for policy reasons and sent through the smart host instead, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ptrelay_delivery_duration_seconds",
			Help:    "Time from a message's arrival to the outcome of a recipient attempt (Postfix's delay=), by route.",
			Buckets: DeliveryBuckets,
		}, []string{"route"}),
		verdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ptrelay_egress_verdict",
			Help: "The egress check verdict per address family: 1 for the current verdict, 0 for earlier ones.",
		}, []string{"family", "verdict"}),
		queue:      newQueueCollector(time.Now),
		alerts:     newAlertMetrics(),
		tls:        newTLSMetrics(),
		dkim:       newDKIMMetrics(),
		smarthosts: newSmarthostCollector(),
		smarthostDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_smarthost_deliveries_total",
			Help: "Recipient delivery attempts through each smart host, by outcome (sent, deferred, bounced, expired).",
		}, []string{"name", "outcome"}),
		verdicts: map[string]map[string]bool{},
	}
	m.reg.MustRegister(m.accepted, m.acceptedBytes, m.refused, m.sessions, m.sessionsTotal, m.deliveries,
		m.reroutes, m.duration, m.verdict, m.queue, m.smarthosts, m.smarthostDeliveries,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.alerts.collectors()...)
	m.reg.MustRegister(m.tls.collectors()...)
	m.reg.MustRegister(m.dkim.collectors()...)
	return m
}

// Registry exposes the registry, for tests and for registering further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetQueueStats installs the function read at every scrape for ptrelay_queue_recipients{state} and
// ptrelay_queue_oldest_message_age_seconds: recipients per state, and the arrival time of the oldest message
// (zero when the queue is empty). A nil map means the queue could not be read: both gauges are then left out
// of that scrape instead of showing an empty queue. f is called from the scrape goroutine, so it must be safe
// for concurrent use.
func (m *Metrics) SetQueueStats(f func() (byState map[string]int, oldest time.Time)) {
	if m == nil {
		return
	}
	m.queue.set(f)
}

// Accepted counts one message accepted and durably queued, of size bytes.
func (m *Metrics) Accepted(size int64) {
	if m == nil {
		return
	}
	m.accepted.Inc()
	if size > 0 {
		m.acceptedBytes.Add(float64(size))
	}
}

// Refused counts one refusal to a client. reason is a short fixed word chosen by the caller, never text from
// the peer (labels must stay few).
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// SessionDelta moves the open inbound session gauge by d: +1 when a session opens (also counted in
// ptrelay_inbound_sessions_total), -1 when it closes.
func (m *Metrics) SessionDelta(d int) {
	if m == nil {
		return
	}
	m.sessions.Add(float64(d))
	if d > 0 {
		m.sessionsTotal.Add(float64(d))
	}
}

// Delivery records one recipient's attempt: route "direct" or "smarthost", outcome "sent", "deferred",
// "bounced", "rerouted" or "expired", and how long the attempt took.
func (m *Metrics) Delivery(route, outcome string, dur time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(route, outcome).Inc()
	m.duration.WithLabelValues(route).Observe(dur.Seconds())
}

// Reroute counts a direct delivery sent through the smart host instead; reason is a short fixed word
// (e.g. "gmail_5.7.25", "microsoft_s3150", "no_ptr").
func (m *Metrics) Reroute(reason string) {
	if m == nil {
		return
	}
	m.reroutes.WithLabelValues(reason).Inc()
}

// SetVerdict records the current egress verdict ("direct-ok", "smarthost", "unknown") of an address family
// ("ipv4", "ipv6"): the series for verdict becomes 1, every earlier verdict of the family 0, so a graph shows
// the change and an alert can match == 1.
func (m *Metrics) SetVerdict(family, verdict string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.verdicts[family]
	if seen == nil {
		seen = map[string]bool{}
		m.verdicts[family] = seen
	}
	seen[verdict] = true
	for v := range seen {
		value := 0.0
		if v == verdict {
			value = 1
		}
		m.verdict.WithLabelValues(family, v).Set(value)
	}
}
