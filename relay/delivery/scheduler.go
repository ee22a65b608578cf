package delivery

import (
	"context"
	"slices"
	"sync"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/route"
)

// hop is the work waiting for one next hop and the sessions serving it.
type hop struct {
	queue    []*txn
	sessions int           // running, idle ones included
	idle     int           // sessions open and waiting for work (see awaitTxn)
	avail    chan struct{} // one token per transaction queued, for idle sessions
}

// linger is how long an open session waits for more mail to its hop before it quits: mail arriving one
// message at a time then shares a session (Postfix's connection cache keeps sessions 2 s for the same reason).
const linger = time.Second

// Run delivers until ctx is done. It is one loop: it wakes when the queue commits new work (store.Notify), at
// the next due time (a timer at store.NextDue), when a session finishes, or on Kick; there is no poll tick. On
// return every delivery in flight has been interrupted and its recipients are back in the queue, due at once.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	flusherDone := make(chan struct{})
	go s.windowFlusher(ctx, flusherDone)
	for {
		cfg := s.cfg.Load()
		retryIn := s.pick(cfg)
		s.dispatch(ctx, &wg)
		wait := s.nextWake(cfg, retryIn)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			s.shutdown(&wg)
			<-flusherDone
			s.flushWindows() // after the last session: what they sent is counted
			return nil
		case <-s.store.Notify():
		case <-s.kick:
		case <-s.done:
		case <-tc:
		}
	}
}

// maxWaiting bounds the transactions claimed but not yet in a session, so a flood of due mail is taken from the
// queue as sessions free up rather than all at once. It is generous (like Postfix's active queue) because the
// route is only known after the claim: a small budget would let one slow destination's backlog hold back mail
// for every other one.
func maxWaiting(cfg *Settings) int {
	return 20*cfg.Concurrency + 500
}

// pickChunk is how many messages one pass claims before the loop dispatches what it got: a large backlog is
// claimed in chunks so the first sessions start at once.
const pickChunk = 128

// pick claims one chunk of due recipients if there is room. It returns 0 when more may be due at once, a delay
// after which to look again when it could not make progress (a store error, or due messages of which nothing
// could be claimed), else -1.
func (s *Scheduler) pick(cfg *Settings) time.Duration {
	s.mu.Lock()
	room := min(maxWaiting(cfg)-s.waiting, pickChunk)
	s.mu.Unlock()
	if room <= 0 {
		return -1
	}
	now := s.now()
	msgs, err := s.store.Due(now, room)
	if err != nil {
		s.log.Error("reading due mail from the queue", "err", err)
		return time.Second
	}
	if len(msgs) == 0 {
		return -1
	}
	if !s.claimAll(cfg, msgs, now) {
		// Due offered mail but nothing was ours to take (a race with an admin change): look again shortly
		// instead of spinning on the same answer.
		return time.Second
	}
	if len(msgs) == room {
		return 0
	}
	return -1
}

// claimWorkers is how many claims run at once: each is a fsync'd Update, and concurrent ones share a commit
// (the queue's group commit), so a burst of due mail is claimed in a few fsyncs instead of one per message.
const claimWorkers = 16

// claimAll claims msgs concurrently and queues their transactions in msgs' order (earliest due first); it
// reports whether anything changed.
func (s *Scheduler) claimAll(cfg *Settings, msgs []*queue.Message, now time.Time) bool {
	var wg sync.WaitGroup
	txns := make([][]*txn, len(msgs))
	changed := make([]bool, len(msgs))
	sem := make(chan struct{}, claimWorkers)
	for i, m := range msgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			txns[i], changed[i] = s.claim(cfg, m, now)
			txns[i] = s.routeClaimed(cfg, txns[i])
		}()
	}
	wg.Wait()
	progress := false
	for i := range msgs {
		for _, t := range txns[i] {
			s.seq++
			t.seq = s.seq
		}
		s.enqueue(txns[i])
		progress = progress || changed[i]
	}
	return progress
}

func (s *Scheduler) enqueue(txns []*txn) { s.queueTxns(txns, false) }

// enqueueFront queues txns among what waits for their hops in the order they were claimed (transactions that
// go on to another smart host: most waiting mail was claimed after them).
func (s *Scheduler) enqueueFront(txns []*txn) {
	s.queueTxns(txns, true)
	s.poke()
}

func (s *Scheduler) queueTxns(txns []*txn, front bool) {
	if len(txns) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range txns {
		t := txns[i]
		if front {
			t = txns[len(txns)-1-i] // each goes in front of the ones after it
		}
		h := s.hops[t.key]
		if h == nil {
			h = &hop{avail: make(chan struct{}, 64)}
			s.hops[t.key] = h
		}
		if front {
			// Before the first transaction claimed after it: mail that goes on to another smart host keeps its
			// place among the mail already waiting there.
			i := 0
			for i < len(h.queue) && h.queue[i].seq <= t.seq {
				i++
			}
			h.queue = slices.Insert(h.queue, i, t)
		} else {
			h.queue = append(h.queue, t)
		}
		s.waiting++
		select {
		case h.avail <- struct{}{}:
		default: // enough tokens are out: the idle sessions will find the queue non-empty
		}
	}
}

// nextWake is how long to sleep before the next due time; -1 means "until something else wakes us".
func (s *Scheduler) nextWake(cfg *Settings, retryIn time.Duration) time.Duration {
	s.mu.Lock()
	full := s.waiting >= maxWaiting(cfg)
	s.mu.Unlock()
	if retryIn >= 0 {
		return retryIn
	}
	if full {
		return -1 // a finishing session wakes us; a past due time would only spin
	}
	next, ok, err := s.store.NextDue()
	if err != nil {
		s.log.Error("reading the next due time", "err", err)
		return time.Second
	}
	if !ok {
		return -1
	}
	d := next.Sub(s.now())
	if d < 0 {
		d = 0
	}
	return d
}

// dispatch starts sessions for hops with waiting transactions, within delivery.concurrency in total and
// delivery.per_destination per hop. A session, once open, takes the next transaction of its hop in turn
// (connection reuse), so new sessions are only opened while work is waiting that no session can take.
func (s *Scheduler) dispatch(ctx context.Context, wg *sync.WaitGroup) {
	cfg := s.cfg.Load()
	total, perDest := cfg.Concurrency, cfg.PerDestination
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop {
		return
	}
	starved, idle := false, 0
	for key, h := range s.hops {
		limit := s.hopLimit(cfg, key, perDest)
		idle += h.idle
		if len(h.queue) > h.idle && h.sessions < limit && s.active >= total {
			starved = true
		}
		// Idle sessions of the hop take queued work first; new sessions only for what they cannot.
		for len(h.queue) > h.idle && h.sessions < limit && s.active < total {
			t := h.queue[0]
			h.queue = h.queue[1:]
			s.waiting--
			h.sessions++
			s.active++
			wg.Add(1)
			go func(key hopKey, t *txn) {
				defer wg.Done()
				s.runSession(ctx, cfg, key, t)
			}(key, t)
		}
	}
	if starved && idle > 0 {
		// delivery.concurrency is reached and sessions idling for other hops hold slots: release them.
		close(s.pressure)
		s.pressure = make(chan struct{})
	}
}

// nextTxn hands a session the next transaction of its hop, or nil when there is none (or we are stopping).
func (s *Scheduler) nextTxn(key hopKey) *txn {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hops[key]
	if s.stop || h == nil || len(h.queue) == 0 {
		return nil
	}
	t := h.queue[0]
	h.queue = h.queue[1:]
	s.waiting--
	return t
}

// awaitTxn keeps an open session for up to linger, for the next transaction of its hop.
func (s *Scheduler) awaitTxn(ctx context.Context, key hopKey) *txn {
	s.mu.Lock()
	h := s.hops[key]
	if s.stop || h == nil {
		s.mu.Unlock()
		return nil
	}
	h.idle++
	pressure := s.pressure
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		h.idle--
		s.mu.Unlock()
	}()
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return nil
		case <-pressure:
			return nil
		case <-h.avail:
			if t := s.nextTxn(key); t != nil {
				return t
			}
		}
	}
}

// takeAll removes every waiting transaction of a hop whose destination just failed as a whole, so they share
// the verdict instead of each repeating the failed MX walk. While another session of the hop is still working,
// the failure may be ours alone (the peer's connection limit), so the waiting work is left to that session.
func (s *Scheduler) takeAll(key hopKey) []*txn {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hops[key]
	if h == nil || h.sessions > 1 {
		return nil
	}
	out := h.queue
	h.queue = nil
	s.waiting -= len(out)
	return out
}

func (s *Scheduler) sessionEnded(key hopKey) {
	s.mu.Lock()
	h := s.hops[key]
	h.sessions--
	s.active--
	if h.sessions == 0 && len(h.queue) == 0 {
		delete(s.hops, key)
	}
	s.mu.Unlock()
	s.poke()
}

// poke wakes the loop to recompute its timer: the queue's Notify only fires for work due now, so a deferral
// into the future would otherwise go unnoticed until something else woke the loop.
func (s *Scheduler) poke() {
	select {
	case s.done <- struct{}{}:
	default:
	}
}

// shutdown stops handing out work, waits for the sessions (their sockets are closed by ctx), and gives every
// transaction still waiting back to the queue.
func (s *Scheduler) shutdown(wg *sync.WaitGroup) {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
	wg.Wait()
	s.mu.Lock()
	var left []*txn
	for key, h := range s.hops {
		left = append(left, h.queue...)
		delete(s.hops, key)
	}
	s.waiting = 0
	s.mu.Unlock()
	for _, t := range left {
		s.release(t)
	}
}

// hopLimit is the most sessions a hop may have: delivery.per_destination, and for a smart host no more than its
// max_connections, and one while it is probed after a pause (its first delivery decides; the others follow it).
func (s *Scheduler) hopLimit(cfg *Settings, key hopKey, perDest int) int {
	if key.Route == route.Smarthost {
		if h := cfg.smarthost(key.Dest); h != nil {
			if s.hosts.probing(h.Name, s.now()) {
				return 1
			}
			return min(perDest, h.MaxConnections)
		}
	}
	return perDest
}

// runSession serves one hop: it opens a session (walking the hop's candidates: MX hosts or smart hosts) and
// sends the transactions of that hop one after the other on it, reopening when a session breaks.
func (s *Scheduler) runSession(ctx context.Context, cfg *Settings, key hopKey, t *txn) {
	if key.Route == route.Smarthost {
		s.runSmarthostSession(ctx, cfg, key, t)
		return
	}
	defer s.sessionEnded(key)
	var (
		ss    *session
		walk  *hopWalk
		fresh bool
		stale bool // the current transaction was already retried after a stale session
	)
	defer func() {
		if ss != nil {
			ss.Close(ctx.Err() == nil)
		}
	}()
	for t != nil {
		if ctx.Err() != nil {
			s.release(t)
			t = s.nextTxn(key)
			continue
		}
		if cur := s.cfg.Load(); cur != cfg {
			// A reload: the next transaction goes out on a session opened with the new settings (another smart
			// host, other TLS), never on one kept open from before.
			if ss != nil {
				ss.Close(true)
				ss = nil
			}
			cfg, walk = cur, nil
		}
		if ss == nil {
			if walk == nil {
				walk = newHopWalk(s, cfg, key)
			}
			var d *decision
			ss, d = walk.next(ctx)
			if ss == nil {
				// The destination failed as a whole: everything waiting for it shares the verdict.
				aborted := ctx.Err() != nil
				for _, w := range append([]*txn{t}, s.takeAll(key)...) {
					s.record(cfg, w, resultsFor(w, *d, walk.lastRelay), aborted)
				}
				return
			}
			fresh = true
		}
		res := ss.send(t.msg, t.rcpts, func() (*outgoing, error) { return s.prepare(t.msg, &ss.cand) }, txContext{
			route: key.Route, nextOnMail: fresh && key.Route == route.Direct, reroute: cfg.Routing.Reroute})
		labelResults(res.Results, ss.cand.tls)
		fresh = false
		if res.Stale && !stale && ctx.Err() == nil {
			// The peer closed a session we kept open (idle timeout, or a limit of messages per connection):
			// not the message's fault, so it goes again at once on a new session.
			stale = true
			ss.Close(false)
			ss, walk = nil, nil
			continue
		}
		if res.NextHost {
			ss.Close(false)
			d := res.NextHostDecision
			walk.last, walk.lastRelay = &d, ss.Relay()
			ss = nil
			continue // same transaction, next MX
		}
		aborted := ctx.Err() != nil
		if aborted {
			res.Results = abortResults(res.Results, ss.Relay())
		}
		s.record(cfg, t, res.Results, aborted)
		if res.Broken {
			ss.Close(false)
			ss, walk = nil, nil // the next transaction starts the walk afresh
		}
		stale = false
		t = s.nextTxn(key)
		if t == nil && ss != nil {
			t = s.awaitTxn(ctx, key)
		}
	}
}

// resultsFor applies one decision to every recipient of a transaction.
func resultsFor(t *txn, d decision, relay string) []rcptResult {
	out := make([]rcptResult, 0, len(t.rcpts))
	for _, r := range t.rcpts {
		out = append(out, rcptResult{Index: r.Index, Addr: r.Addr, decision: d, Relay: relay})
	}
	return out
}

// abortResults keeps what a shutdown could not undo (a 2xx, a 5xx) and marks the rest as interrupted.
func abortResults(in []rcptResult, relay string) []rcptResult {
	ab := classify(stAbort, context.Canceled, where{})
	for i := range in {
		if in[i].Outcome == Deferred {
			in[i].decision = ab
			in[i].Relay = relay
		}
	}
	return in
}
