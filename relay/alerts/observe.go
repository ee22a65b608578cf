package alerts

import (
	"slices"
	"sync"
	"time"
)

// What the daemon calls when it notices something. Every method returns at once and never waits for I/O:
// the change is applied on the manager's goroutine. Calls that say "it works" (a login succeeded, a domain
// was delivered to) come with every message, so they cost a map look-up when nothing was wrong.

// Raise records that c holds now.
func (mg *Manager) Raise(c Condition) {
	mg.opsMu.Lock()
	mg.hot[c.Key()] = true
	mg.opsMu.Unlock()
	mg.enqueue(func(m *Machine, now time.Time) { m.Raise(now, c) })
}

// Clear records that the condition (event, subject) no longer holds.
func (mg *Manager) Clear(e Event, subject string) {
	key := Key(e, subject)
	mg.opsMu.Lock()
	hot := mg.hot[key]
	delete(mg.hot, key)
	mg.opsMu.Unlock()
	if hot {
		mg.enqueue(func(m *Machine, now time.Time) { m.Clear(now, key) })
	}
}

// Sync raises conds and clears every other condition of event whose subject starts with scope: for sources
// that report the whole picture at once (the blocklists of one egress check, the certificates configured).
func (mg *Manager) Sync(e Event, scope string, conds []Condition) {
	mg.opsMu.Lock()
	for _, c := range conds {
		mg.hot[c.Key()] = true
	}
	mg.opsMu.Unlock()
	conds = slices.Clone(conds)
	mg.enqueue(func(m *Machine, now time.Time) { m.Sync(now, e, scope, conds) })
}

// Note adds a line to the next digest only (an egress address change that did not change the verdict).
func (mg *Manager) Note(text string) {
	mg.enqueue(func(m *Machine, now time.Time) { m.Note(now, text) })
}

// Inbound AUTH: more than authLimit failures from one client within authWindow raise EventInboundAuth (a
// password changed on one side only, or someone guessing); a success from that client clears it.
const (
	authWindow = 10 * time.Minute
	authLimit  = 5
	// policyWindow and policyLimit: three recipients (more than two) deferred for MTA-STS/DANE at one domain
	// within a day raise EventTLSPolicy.
	policyWindow = 24 * time.Hour
	policyLimit  = 2
	// raiseEvery throttles the updates of a condition fed by a counter, so that a login storm does not become
	// a database write per attempt.
	raiseEvery = 5 * time.Minute
)

// AuthFailed records a refused AUTH from client (an IP address) for user (as the client typed it).
func (mg *Manager) AuthFailed(client, user string) {
	now := mg.now()
	n, users, raise := mg.auth.fail(now, client, user)
	if raise {
		mg.Raise(InboundAuth(client, n, authWindow, users))
	}
}

// AuthSucceeded records a successful AUTH from client.
func (mg *Manager) AuthSucceeded(client string) {
	mg.auth.reset(client)
	mg.Clear(EventInboundAuth, client)
}

// TLSPolicyDeferred records one recipient at domain deferred because its MTA-STS or DANE policy failed (policy
// names it: "MTA-STS" or "DANE"; reason is the delivery side's one-line diagnosis). More than policyLimit
// within policyWindow raise EventTLSPolicy.
func (mg *Manager) TLSPolicyDeferred(domain, policy, reason string) {
	n, _, raise := mg.policy.fail(mg.now(), domain, "")
	if raise {
		c := TLSPolicy(domain, policy, reason, n)
		c.Expire = 6 * time.Hour // the mail left the queue (bounced at lifetime, deleted) without a success
		mg.Raise(c)
	}
}

// TLSPolicyDelivered records a delivery to domain that met its policy: the condition clears.
func (mg *Manager) TLSPolicyDelivered(domain string) {
	mg.policy.reset(domain)
	mg.Clear(EventTLSPolicy, domain)
}

// SmarthostDown records that the delivery side marked smart host host down; lastErr is its last failure and
// waiting the recipients waiting for it. It fires after the hold-down.
func (mg *Manager) SmarthostDown(host, lastErr string, waiting int) {
	mg.Raise(SmarthostDown(host, lastErr, waiting))
}

// SmarthostUp records a successful delivery through host.
func (mg *Manager) SmarthostUp(host string) { mg.Clear(EventSmarthostDown, host) }

// SmarthostLoginRefused records that host refused ptrelay's login with reply (535, a token endpoint's
// invalid_client). It fires at once.
func (mg *Manager) SmarthostLoginRefused(host, reply string) { mg.Raise(SmarthostAuth(host, reply)) }

// SmarthostLoginOK records a successful login to host.
func (mg *Manager) SmarthostLoginOK(host string) { mg.Clear(EventSmarthostAuth, host) }

// failureTracker counts failures per subject within a window.
type failureTracker struct {
	window time.Duration
	limit  int

	mu   sync.Mutex
	subj map[string]*failures
}

type failures struct {
	at        []time.Time
	users     []string
	lastRaise time.Time
}

// maxTracked bounds the subjects a tracker remembers (a guessing attack from many addresses).
const maxTracked = 1024

func newFailureTracker(window time.Duration, limit int) *failureTracker {
	return &failureTracker{window: window, limit: limit, subj: map[string]*failures{}}
}

// fail counts one failure of subject and says whether to raise its condition now: when the count within the
// window first passes the limit, and then at most every raiseEvery.
func (t *failureTracker) fail(now time.Time, subject, user string) (n int, users []string, raise bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.subj[subject]
	if f == nil {
		if len(t.subj) >= maxTracked {
			t.evict()
		}
		f = &failures{}
		t.subj[subject] = f
	}
	f.at = append(recent(f.at, now, t.window), now)
	if user != "" && !slices.Contains(f.users, user) && len(f.users) < 3 {
		f.users = append(f.users, user)
	}
	n = len(f.at)
	if n > t.limit && (f.lastRaise.IsZero() || now.Sub(f.lastRaise) >= raiseEvery) {
		f.lastRaise = now
		return n, slices.Clone(f.users), true
	}
	return n, nil, false
}

// reset forgets subject.
func (t *failureTracker) reset(subject string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.subj, subject)
}

// evict drops the subject whose last failure is oldest.
func (t *failureTracker) evict() {
	var oldest string
	var at time.Time
	for s, f := range t.subj {
		if last := f.at[len(f.at)-1]; oldest == "" || last.Before(at) {
			oldest, at = s, last
		}
	}
	delete(t.subj, oldest)
}

// Holds reports whether the condition (event, subject) was raised and not cleared.
func (mg *Manager) Holds(e Event, subject string) bool {
	mg.opsMu.Lock()
	defer mg.opsMu.Unlock()
	return mg.hot[Key(e, subject)]
}
