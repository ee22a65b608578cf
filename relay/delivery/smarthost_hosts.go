package delivery

import (
	"log/slog"
	"sync"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

// What delivery knows about each smart host while the daemon runs: its health (host-level failures in a row,
// down with a pause that doubles, a probe once the pause is over), a quota refusal's end, the sending windows,
// and the last error. It is kept by name across reloads; the sending windows are also kept in the queue
// database (smarthost_persist.go), so that a restart does not hand out a day's budget twice.

// probeTimeout frees a probe that never reported (its transaction was given back at a shutdown, say), so that
// another transaction may probe.
const probeTimeout = 15 * time.Minute

// noWindowQuotaPause is how long a quota refusal limits a host that has no window configured to say when its
// provider's budget frees.
const noWindowQuotaPause = time.Hour

// hostState is one smart host's state. The book's lock guards it.
type hostState struct {
	failures  int       // host-level failures in a row
	downs     int       // down periods in a row: the pause doubles with each
	downSince time.Time // zero: up
	downUntil time.Time // the pause ends; then one probe delivery decides
	probe     *txn      // the transaction probing a host whose pause is over
	probeAt   time.Time
	// remoteUntil: the host refused for its own quota; it is limited until then.
	remoteUntil time.Time
	lastErr     string
	lastErrAt   time.Time
	lastStatus  smtpstatus.Status
	msgs, rcpts eventLog
	dirty       bool // windows changed since the last flush
}

// hostBook holds the states of the smart hosts by name.
type hostBook struct {
	mu     sync.Mutex
	hosts  map[string]*hostState
	store  *queue.Store // nil: windows are not kept across restarts (tests without a store)
	log    *slog.Logger
	loaded map[string]bool
}

func newHostBook(store *queue.Store, log *slog.Logger) *hostBook {
	return &hostBook{hosts: map[string]*hostState{}, store: store, log: log, loaded: map[string]bool{}}
}

// state returns name's state, reading its stored windows the first time. The lock is held.
func (b *hostBook) state(name string, now time.Time) *hostState {
	st := b.hosts[name]
	if st == nil {
		st = &hostState{}
		b.hosts[name] = st
		b.restore(name, st, now)
	}
	return st
}

// down reports a host in its pause.
func (st *hostState) down(now time.Time) bool {
	return !st.downSince.IsZero() && now.Before(st.downUntil)
}

// halfOpen reports a host whose pause is over: the next delivery through it is the probe.
func (st *hostState) halfOpen(now time.Time) bool {
	return !st.downSince.IsZero() && !now.Before(st.downUntil)
}

// probing reports a probe under way by another transaction than t.
func (st *hostState) probingBy(t *txn, now time.Time) bool {
	return st.probe != nil && st.probe != t && now.Sub(st.probeAt) < probeTimeout
}

// limitedUntil is when h can take a transaction of n recipients: now when it can at once.
func (st *hostState) limitedUntil(h *Smarthost, now time.Time, n int) time.Time {
	until := now
	if st.remoteUntil.After(until) {
		until = st.remoteUntil
	}
	for _, r := range h.MessageRate {
		if at := st.msgs.freesAt(now, r.Per, r.N, 1); at.After(until) {
			until = at
		}
	}
	for _, r := range h.RecipientRate {
		if at := st.rcpts.freesAt(now, r.Per, r.N, n); at.After(until) {
			until = at
		}
	}
	return until
}

// reservation is what a transaction counted in a host's windows, to be taken back for what the host did not
// accept.
type reservation struct {
	host  string
	at    time.Time
	rcpts int
}

// reserve counts one message of t's recipients in h's windows when they fit; else it returns when they will.
func (b *hostBook) reserve(h *Smarthost, t *txn, now time.Time) (*reservation, time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state(h.Name, now)
	st.msgs.prune(now)
	st.rcpts.prune(now)
	if until := st.limitedUntil(h, now, len(t.rcpts)); until.After(now) {
		return nil, until, false
	}
	st.msgs.add(now, 1)
	st.rcpts.add(now, len(t.rcpts))
	st.dirty = true
	return &reservation{host: h.Name, at: now, rcpts: len(t.rcpts)}, now, true
}

// refund takes back what a transaction did not deliver: the message when no recipient was accepted, and the
// recipients that were not.
func (b *hostBook) refund(r *reservation, sent int) {
	if r == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.hosts[r.host]
	if st == nil {
		return
	}
	if sent == 0 {
		st.msgs.refund(r.at, 1)
	}
	if n := r.rcpts - sent; n > 0 {
		st.rcpts.refund(r.at, n)
	}
	st.dirty = true
}

// failure records a host-level failure d. It reports whether the host went down now (after After failures in
// a row, or at once when its probe failed), and for how long.
func (b *hostBook) failure(name string, d decision, now time.Time, fo FailoverSettings) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state(name, now)
	st.failures++
	st.lastErr, st.lastErrAt, st.lastStatus = replyText(d.Status), now, d.Status
	if !st.halfOpen(now) && st.failures < fo.After {
		return false, 0
	}
	st.downs++
	pause := fo.DownMin
	for i := 1; i < st.downs && pause < fo.DownMax; i++ {
		pause *= 2
	}
	pause = min(pause, fo.DownMax)
	if st.downSince.IsZero() {
		st.downSince = now
	}
	st.downUntil = now.Add(pause)
	st.failures, st.probe = 0, nil
	return true, pause
}

// success records that h answered a transaction: it is up, whatever it was before. It reports whether it had
// been down.
func (b *hostBook) success(name string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state(name, now)
	was := !st.downSince.IsZero()
	st.failures, st.downs, st.downSince, st.downUntil, st.probe = 0, 0, time.Time{}, time.Time{}, nil
	return was
}

// quota records that h refused for its provider's budget: it is limited until the oldest send counted in its
// longest window leaves that window (when the provider's window frees too), at least a minute, and for
// noWindowQuotaPause when no window is configured.
func (b *hostBook) quota(h *Smarthost, d decision, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state(h.Name, now)
	st.lastErr, st.lastErrAt, st.lastStatus = replyText(d.Status), now, d.Status
	until := now.Add(noWindowQuotaPause)
	var longest time.Duration
	var log *eventLog
	for _, r := range h.MessageRate {
		if r.Per > longest {
			longest, log = r.Per, &st.msgs
		}
	}
	for _, r := range h.RecipientRate {
		if r.Per > longest {
			longest, log = r.Per, &st.rcpts
		}
	}
	if log != nil {
		until = now.Add(time.Minute)
		from := now.Add(-longest)
		log.each(func(_, end time.Time, n int) bool {
			if n > 0 && end.After(from) {
				if leaves := end.Add(longest); leaves.After(until) {
					until = leaves
				}
				return false
			}
			return true
		})
	}
	st.remoteUntil = until
	return until
}

// claimProbe makes t the probe of a host whose pause is over.
func (b *hostBook) claimProbe(name string, t *txn, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.hosts[name]; st != nil && st.halfOpen(now) && !st.probingBy(t, now) {
		st.probe, st.probeAt = t, now
	}
}

// forget drops the state of hosts a reload removed (their stored windows go at the next flush).
func (b *hostBook) forget(keep map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range b.hosts {
		if !keep[name] {
			delete(b.hosts, name)
			b.loaded[name] = false
		}
	}
}

// probing reports a host whose pause is over: it takes one session until its probe decides.
func (b *hostBook) probing(name string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.hosts[name]
	return st != nil && st.halfOpen(now)
}

// endPauses ends the pause of every down host, so that the next delivery probes it (the admin's `queue retry`).
func (b *hostBook) endPauses(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range b.hosts {
		if st.down(now) {
			st.downUntil = now
		}
	}
}

// reset forgets a host's health (not its windows): its settings changed, so its past failures say nothing.
func (b *hostBook) reset(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.hosts[name]; st != nil {
		st.failures, st.downs, st.downSince, st.downUntil, st.probe, st.remoteUntil = 0, 0, time.Time{}, time.Time{}, nil, time.Time{}
	}
}
