package relay

import (
	"net/netip"
	"path/filepath"
	"slices"
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

// maxTLSClients bounds the client addresses remembered for `ptrelay status`.
const maxTLSClients = 50

// tlsClients remembers the last TLS negotiation per client address.
type tlsClients struct {
	mu      sync.Mutex
	clients map[netip.Addr]admin.TLSClient
}

func (t *tlsClients) add(ip netip.Addr, version, cipher string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clients == nil {
		t.clients = map[netip.Addr]admin.TLSClient{}
	}
	if _, ok := t.clients[ip]; !ok && len(t.clients) >= maxTLSClients {
		var oldest netip.Addr
		for a, c := range t.clients {
			if !oldest.IsValid() || c.At.Before(t.clients[oldest].At) {
				oldest = a
			}
		}
		delete(t.clients, oldest)
	}
	t.clients[ip] = admin.TLSClient{Client: ip.String(), Version: version, Cipher: cipher, At: time.Now()}
}

func (t *tlsClients) newestFirst() []admin.TLSClient {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]admin.TLSClient, 0, len(t.clients))
	for _, c := range t.clients {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b admin.TLSClient) int { return b.At.Compare(a.At) })
	return out
}

// observeAttempt receives every recipient attempt from the delivery side's log-line function.
func (r *Relay) observeAttempt(res delivery.Result) {
	r.metrics.Delivery(string(res.Route), string(res.Outcome), res.Delay)
	r.metrics.SmarthostDelivery(res.Smarthost, string(res.Outcome))
	r.observeTLSPolicy(res)
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
	st := admin.Status{Version: r.opts.Version, Started: r.started, LastErrors: r.lastErrors.newestFirst(),
		TLSClients: r.tlsClients.newestFirst(), PendingRestart: r.pendingRestart()}
	for _, l := range r.listeners {
		st.Listeners = append(st.Listeners, "smtp "+l.Addr().String())
	}
	// What is bound, not what the configuration says now: a reload does not move these, and a relative socket
	// path means nothing to an admin whose shell is not in the daemon's working directory.
	if r.adminLn != nil {
		sock := r.adminLn.Addr().String()
		if abs, err := filepath.Abs(sock); err == nil {
			sock = abs
		}
		st.Listeners = append(st.Listeners, "admin "+sock)
	}
	if r.metricsLn != nil {
		st.Listeners = append(st.Listeners, "metrics "+r.metricsLn.Addr().String())
	}
	if r.web.ln != nil {
		st.Listeners = append(st.Listeners, "web "+webAddr(r.web.ln))
	}
	if c := r.inbound.Certificate(); c != nil {
		st.Certificate = &admin.Certificate{File: c.File, SelfSigned: c.Auto, Names: c.Names, NotAfter: c.NotAfter}
	}
	st.Egress = r.egressStatus()
	st.Smarthosts = r.smarthostStatus()
	st.Alerts = r.alertStatus()
	st.TLSPolicy = r.tlsPolicyStatus()
	if qs, err := r.store.Stats(); err == nil {
		st.Queue = qs
	}
	st.SetDurations(time.Now())
	return st
}
