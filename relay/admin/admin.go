// Package admin is ptrelay's administration interface: an HTTP+JSON API on a Unix socket served by the daemon
// (Server), the client the CLI uses to reach it (Client), and the text rendering of queue listings, message
// details and status (render.go), shared by the online and offline paths so both print the same thing.
//
// The API speaks in the queue's own types (queue.Message, queue.Filter, queue.Selector, queue.Stats): the CLI
// code works on the Queue interface, which the Client implements over the socket and *queue.Store implements
// directly when no daemon runs. Listings are streamed: queue.Store.Scan reads a batch at a time, the server
// writes each message as it comes (one JSON line each) and the client hands each to the renderer as it reads
// it, so neither side's memory grows with the queue. The package knows nothing of SMTP sessions, delivery or
// DNS; the daemon hands it a status function and a kick function to wake its scheduler.
package admin

import (
	"io"
	"sync"
	"time"

	"ptrelay/queue"
)

// Queue is what the queue commands need, online (Client) or offline (*queue.Store). Errors keep the queue's
// sentinels (queue.ErrNotFound, queue.ErrStorage, queue.ErrReadOnly) for errors.Is on both paths.
type Queue interface {
	// Scan calls fn for each message the filter selects, oldest first, as it is read (see queue.Store.Scan).
	Scan(f queue.Filter, fn func(queue.Item) error) (queue.Page, error)
	Get(id string) (*queue.Message, error)
	Body(id string) (io.ReadCloser, error)
	Delete(queue.Selector) (int, error)
	Hold(queue.Selector) (int, error)
	Release(queue.Selector) (int, error)
	Retry(queue.Selector) (int, error)
	Bounce(queue.Selector) (int, error)
	Corrupt() ([]queue.CorruptRecord, error)
}

var (
	_ Queue = (*queue.Store)(nil)
	_ Queue = (*Client)(nil)
)

// Status is what `ptrelay status` shows. The daemon fills the raw facts; Uptime and OldestAge are derived by
// SetDurations (the server calls it on every request).
type Status struct {
	Version    string         `json:"version"`
	Started    time.Time      `json:"started,omitzero"`
	Uptime     string         `json:"uptime,omitempty"`
	Listeners  []string       `json:"listeners,omitempty"`
	Egress     []EgressStatus `json:"egress,omitempty"`
	Queue      queue.Stats    `json:"queue"`
	OldestAge  string         `json:"oldest_age,omitempty"`
	LastErrors []LastError    `json:"last_errors,omitempty"` // newest first
	TLSClients []TLSClient    `json:"tls_clients,omitempty"` // who negotiated which TLS version, newest first
	Alerts     []Alert        `json:"alerts,omitempty"`      // alert conditions that hold, most severe first
	// PendingRestart names the keys a reload changed that only a restart applies (smtp.listen, data_dir...).
	PendingRestart []string `json:"pending_restart,omitempty"`
	// Certificate is the STARTTLS certificate new sessions get; nil when STARTTLS is not offered.
	Certificate *Certificate `json:"certificate,omitempty"`
	// Smarthosts are the smart hosts' health and budgets, in the configured order (see SmarthostStatus).
	Smarthosts []SmarthostStatus `json:"smarthosts,omitempty"`
	// TLSPolicy is outbound TLS under the recipients' policies: DANE, MTA-STS, TLS-RPT counts.
	TLSPolicy *TLSPolicyStatus `json:"tls_policy,omitempty"`
}

// Certificate describes the inbound STARTTLS certificate: the names a server may verify it by (Exchange's
// "Basic authentication over TLS" expects the exact name its send connector uses) and when it expires.
type Certificate struct {
	File       string    `json:"file"`        // the PEM file to copy to servers that must trust it
	SelfSigned bool      `json:"self_signed"` // tls_cert = "auto": made by ptrelay
	Names      []string  `json:"names"`       // DNS names, then IP addresses
	NotAfter   time.Time `json:"not_after"`
}

// TLSClient is the last STARTTLS negotiation of one client address: what an admin needs to see which senders
// still depend on smtp.tls_legacy (TLS 1.0/1.1).
type TLSClient struct {
	Client  string    `json:"client"`
	Version string    `json:"version"` // "TLS1.0" ... "TLS1.3"
	Cipher  string    `json:"cipher"`
	At      time.Time `json:"at"`
}

// Legacy reports a TLS version below 1.2, which only smtp.tls_legacy allows.
func (c TLSClient) Legacy() bool { return c.Version == "TLS1.0" || c.Version == "TLS1.1" }

// EgressStatus is the egress check's result for one address family.
type EgressStatus struct {
	Family  string    `json:"family"`            // "ipv4" | "ipv6"
	IP      string    `json:"ip,omitempty"`      // "" when discovery failed
	Verdict string    `json:"verdict"`           // "direct-ok" | "smarthost" | "unknown"
	Reasons []string  `json:"reasons,omitempty"` // why not direct-ok, in the checklist's words
	Fixes   []string  `json:"fixes,omitempty"`   // what to do about them, one sentence each
	Checked time.Time `json:"checked,omitzero"`  // when the verdict was computed
}

// LastError is one recent delivery failure (deferred or bounced recipient).
type LastError struct {
	At    time.Time `json:"at"`
	ID    string    `json:"id"`
	Rcpt  string    `json:"rcpt"`
	Reply string    `json:"reply"` // "451 4.7.1 text" or the local reason (connection refused ...)
}

// SetDurations derives Uptime from Started and OldestAge from Queue.OldestArrival, as of now.
func (s *Status) SetDurations(now time.Time) {
	if !s.Started.IsZero() {
		s.Uptime = age(now, s.Started)
	}
	if !s.Queue.OldestArrival.IsZero() {
		s.OldestAge = age(now, s.Queue.OldestArrival)
	}
}

// age is a duration for people: whole seconds, never negative (clocks step).
func age(now, then time.Time) string {
	d := max(now.Sub(then), 0)
	return d.Truncate(time.Second).String()
}

// RecentErrors keeps the last few delivery errors for Status. It is safe for concurrent use; the zero value is
// not usable, call NewRecentErrors.
type RecentErrors struct {
	mu   sync.Mutex
	ring []LastError
	next int
	full bool
}

// NewRecentErrors keeps the n most recent errors (n >= 1).
func NewRecentErrors(n int) *RecentErrors {
	return &RecentErrors{ring: make([]LastError, max(n, 1))}
}

// Add records one error, pushing out the oldest when full.
func (r *RecentErrors) Add(e LastError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = e
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
}

// List returns the recorded errors, newest first.
func (r *RecentErrors) List() []LastError {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	out := make([]LastError, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	return out
}
