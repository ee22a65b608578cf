package metrics

import "github.com/prometheus/client_golang/prometheus"

// dkimMetrics count the DKIM signing of delivery attempts.
type dkimMetrics struct {
	signed   prometheus.Counter
	unsigned *prometheus.CounterVec
}

func newDKIMMetrics() *dkimMetrics {
	return &dkimMetrics{
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ptrelay_dkim_signed_total",
			Help: "Delivery attempts whose message was DKIM-signed (one per attempt, whatever the number of keys).",
		}),
		unsigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptrelay_dkim_unsigned_total",
			Help: "Delivery attempts sent without a DKIM signature while [dkim] has keys, by reason (no_key, no_from, from_domains, bad_from, bad_header).",
		}, []string{"reason"}),
	}
}

func (d *dkimMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.signed, d.unsigned}
}

// DKIM counts one delivery attempt's signing: signed, or not for reason (a fixed word of the signer, never text
// from a message).
func (m *Metrics) DKIM(signed bool, reason string) {
	if m == nil {
		return
	}
	if signed {
		m.dkim.signed.Inc()
		return
	}
	m.dkim.unsigned.WithLabelValues(reason).Inc()
}
