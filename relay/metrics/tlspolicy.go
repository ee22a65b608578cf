package metrics

import "github.com/prometheus/client_golang/prometheus"

// tlsMetrics count outbound TLS under the recipients' policies (MTA-STS, DANE): attempts by the level they ran
// at, sessions by TLS-RPT result, policy fetches, and whether DANE is on.
type tlsMetrics struct {
	deliveries *prometheus.CounterVec
	sessions   *prometheus.CounterVec
	fetches    *prometheus.CounterVec
	dane       prometheus.Gauge
}

func newTLSMetrics() *tlsMetrics {
	return &tlsMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_delivery_tls_total",
			Help: "Direct and smart-host recipient attempts by TLS level (none, may, encrypt, verify, dane, mta-sts: the log's tls=) and outcome (sent, deferred, bounced, rerouted, expired). A deferral by an MTA-STS or DANE policy counts under its policy's level.",
		}, []string{"tls", "outcome"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_tls_policy_sessions_total",
			Help: "Sessions with MX hosts under a published policy, by policy type (sts, tlsa) and TLS-RPT result (success, starttls-not-supported, certificate-host-mismatch, validation-failure, dnssec-invalid, ...).",
		}, []string{"type", "result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_mtasts_fetches_total",
			Help: "MTA-STS policy fetches by result (ok, sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).",
		}, []string{"result"}),
		dane: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ptrelay_dane_active",
			Help: "1 while DANE is on (delivery.dane = \"auto\" and the resolver is trusted and validates DNSSEC), else 0.",
		}),
	}
}

func (t *tlsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.deliveries, t.sessions, t.fetches, t.dane}
}

// DeliveryTLS counts one recipient attempt at TLS level tls with its outcome.
func (m *Metrics) DeliveryTLS(tls, outcome string) {
	if m == nil {
		return
	}
	m.tls.deliveries.WithLabelValues(tls, outcome).Inc()
}

// TLSPolicySession counts one session under a policy of type typ ("sts", "tlsa") with its TLS-RPT result.
func (m *Metrics) TLSPolicySession(typ, result string) {
	if m == nil {
		return
	}
	m.tls.sessions.WithLabelValues(typ, result).Inc()
}

// MTASTSFetch counts one policy fetch; result is "ok" or the failure's TLS-RPT result type.
func (m *Metrics) MTASTSFetch(result string) {
	if m == nil {
		return
	}
	m.tls.fetches.WithLabelValues(result).Inc()
}

// SetDANE records whether DANE is on.
func (m *Metrics) SetDANE(active bool) {
	if m == nil {
		return
	}
	v := 0.0
	if active {
		v = 1
	}
	m.tls.dane.Set(v)
}
