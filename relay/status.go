package relay

import (
	"sync"
	"time"

	"ptrelay/relay/admin"
	"ptrelay/relay/delivery"
)

// maxLastErrors bounds the delivery failures kept for `ptrelay status`.
const maxLastErrors = 10

// lastErrors is a small ring of the most recent failed recipient attempts, newest first when read.
type lastErrors struct {
	mu   sync.Mutex
	ring []admin.LastError
}

func (l *lastErrors) add(e admin.LastError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring = append(l.ring, e)
	if len(l.ring) > maxLastErrors {
		l.ring = l.ring[len(l.ring)-maxLastErrors:]
	}
}

func (l *lastErrors) newestFirst() []admin.LastError {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]admin.LastError, len(l.ring))
	for i, e := range l.ring {
		out[len(l.ring)-1-i] = e
	}
	return out
}

// observeAttempt receives every recipient attempt from the delivery side's log-line function.
func (r *Relay) observeAttempt(res delivery.Result) {
	r.metrics.Delivery(string(res.Route), string(res.Outcome), res.Delay)
	if res.Outcome == delivery.Sent {
		return
	}
	reply := res.Status.String()
	if res.Relay != "" && res.Relay != "none" {
		reply += " (" + res.Relay + ")"
	}
	r.lastErrors.add(admin.LastError{At: time.Now(), ID: res.ID, Rcpt: res.Rcpt, Reply: reply})
}

// status is what `ptrelay status` shows of the running daemon.
func (r *Relay) status() admin.Status {
	st := admin.Status{Version: r.opts.Version, Started: r.started, LastErrors: r.lastErrors.newestFirst()}
	for _, l := range r.listeners {
		st.Listeners = append(st.Listeners, "smtp "+l.Addr().String())
	}
	cfg := r.cfg.Load()
	st.Listeners = append(st.Listeners, "admin "+cfg.AdminSocket())
	if cfg.Admin.MetricsListen != "" {
		st.Listeners = append(st.Listeners, "metrics "+cfg.Admin.MetricsListen)
	}
	st.Egress = r.egressStatus()
	if qs, err := r.store.Stats(); err == nil {
		st.Queue = qs
	}
	st.SetDurations(time.Now())
	return st
}
