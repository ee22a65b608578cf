package delivery

import (
	"context"
)

// runSmarthostSession serves one smart host's queue (key.Dest names the host): it opens a session with the
// host's addresses and sends the transactions waiting for the host one after the other. Before each, it checks
// that the host is still the transaction's choice and counts it in the host's windows. What the host says is
// judged twice: for the recipients (outcome.go) and for the host (smarthost_class.go). A host-level failure
// sends the transaction on to the next host at once and counts toward marking the host down; a quota refusal
// limits the host until its window frees; a refused sender tries the next host for that message. None of them
// bounces anything.
func (s *Scheduler) runSmarthostSession(ctx context.Context, cfg *Settings, key hopKey, t *txn) {
	defer s.sessionEnded(key)
	var (
		ss    *session
		walk  *hopWalk
		stale bool // the current transaction was already retried after a stale session
	)
	drop := func(quit bool) {
		if ss != nil {
			ss.Close(quit)
			ss = nil
		}
		walk = nil
	}
	defer func() { drop(ctx.Err() == nil) }()
	for t != nil {
		if ctx.Err() != nil {
			s.release(t)
			t = s.nextTxn(key)
			continue
		}
		if cur := s.cfg.Load(); cur != cfg {
			drop(true) // a reload: another host list, other credentials or TLS
			cfg = cur
		}
		now := s.now()
		h := cfg.smarthost(key.Dest)
		if h == nil || !s.still(cfg, h, t, now) {
			// Removed by a reload, down, over its budget, or no longer first for this sender: choose again.
			s.reroute(cfg, t)
			t = s.nextTxn(key)
			continue
		}
		res, _, ok := s.hosts.reserve(h, t, now)
		if !ok {
			s.reroute(cfg, t) // concurrent sessions spent the budget: the next host, or wait
			t = s.nextTxn(key)
			continue
		}
		t.sh.res = res
		if ss != nil && !ss.tokenRenewAt.IsZero() && !now.Before(ss.tokenRenewAt) {
			drop(true) // a session never outlives the token it logged in with
		}
		if ss == nil {
			if walk == nil {
				walk = newHopWalk(s, cfg, key)
			}
			var d *decision
			ss, d = walk.next(ctx)
			if ss == nil {
				s.hosts.refund(res, 0)
				if ctx.Err() != nil {
					s.record(cfg, t, resultsFor(t, *d, walk.lastRelay), true)
					return
				}
				s.hostFailed(cfg, h, t, *d, walk.lastRelay)
				walk = nil
				t = s.nextTxn(key) // the next one tries the host again, or finds it down and moves on
				continue
			}
		}
		out := ss.send(t.msg, t.rcpts, func() (*outgoing, error) { return s.prepare(t.msg, &ss.cand) }, txContext{
			route: key.Route, reroute: cfg.Routing.Reroute})
		if out.Stale && !stale && ctx.Err() == nil {
			// The host closed a session we kept open: not the message's fault; once more on a new session.
			s.hosts.refund(res, 0)
			stale = true
			drop(false)
			continue
		}
		stale = false
		aborted := ctx.Err() != nil
		if aborted {
			out.Results = abortResults(out.Results, ss.Relay())
		}
		if s.judge(cfg, h, t, out.Results, aborted) || out.Broken {
			drop(false)
		}
		t = s.nextTxn(key)
		if t == nil && ss != nil {
			t = s.awaitTxn(ctx, key)
		}
	}
}

// judge records a transaction's results through h, after sorting out the recipients whose reply was about the
// host or the sender: those go on to another host now. It reports whether the session should end (the host
// failed, or is over its budget).
func (s *Scheduler) judge(cfg *Settings, h *Smarthost, t *txn, results []rcptResult, aborted bool) bool {
	var (
		keep     []rcptResult
		moved    []rcptRef
		why      *rcptResult
		class    hostClass
		sent     int
		answered bool // the host replied (a connection lost mid-dialogue says nothing about it either way)
	)
	for i := range results {
		r := &results[i]
		answered = answered || r.Status.Code != 0
		c := classRecipient
		if !aborted {
			c = smarthostClass(r.Stage, r.Status)
		}
		if c == classRecipient {
			keep = append(keep, *r)
			if r.Outcome == Sent {
				sent++
			}
			continue
		}
		moved = append(moved, rcptRef{Index: r.Index, Addr: r.Addr})
		if why == nil || c == classHost {
			why, class = r, c // a host failure outweighs the others: the session is not usable
		}
	}
	s.hosts.refund(t.sh.res, sent)
	if len(keep) > 0 {
		s.record(cfg, t, keep, aborted)
	}
	now := s.now()
	if class != classHost && answered && !aborted {
		// The host answered the transaction: it is up, whatever the answer.
		if s.hosts.success(h.Name, now) {
			s.log.Info("smart host is up again", "smarthost", h.Name)
		}
		if sent > 0 && s.obs.OnSmarthostUp != nil {
			s.obs.OnSmarthostUp(h.Name)
		}
	}
	if len(moved) == 0 {
		return false
	}
	rest := &txn{msg: t.msg, rcpts: moved, key: t.key, seq: t.seq, sh: smarthostTxn{pinned: t.sh.pinned, tried: cloneTried(t.sh.tried)}}
	d := why.decision
	switch class {
	case classHost:
		s.hostFailed(cfg, h, rest, d, why.Relay)
		return true
	case classQuota:
		until := s.hosts.quota(h, d, now)
		s.log.Warn("smart host refused for its sending quota; it is limited until its window frees",
			"smarthost", h.Name, "relay", why.Relay, "reply", replyText(d.Status), "until", until.UTC().Format("2006-01-02 15:04:05 MST"),
			"fix", "set message_rate or recipient_rate of this host to the provider's limits, so that ptrelay stops before the provider refuses")
		s.reroute(cfg, append([]*txn{rest}, s.takeQueued(hopKey{Route: t.key.Route, Dest: h.Name})...)...)
		return true
	}
	// classSender: this host may not send as the sender; another may.
	rest.tried(h, d, why.Relay, classSender)
	s.log.Warn("smart host refused the sender; trying the next smart host", "id", t.msg.ID, "smarthost", h.Name,
		"from", "<"+t.msg.Envelope.From+">", "reply", replyText(d.Status))
	s.reroute(cfg, rest)
	return false
}

// hostFailed handles a host-level failure of h for t: t goes on to the next host at once; after
// smarthost_failover_after of them in a row the host is down, and everything waiting for it goes elsewhere.
func (s *Scheduler) hostFailed(cfg *Settings, h *Smarthost, t *txn, d decision, relay string) {
	now := s.now()
	down, pause := s.hosts.failure(h.Name, d, now, cfg.Failover)
	t.tried(h, d, relay, classHost)
	var fix []any
	if f := hostFix(h, d.Status); f != "" {
		fix = []any{"fix", f}
	}
	if !down {
		s.log.Warn("smart host failed; trying the next one", append([]any{"id", t.msg.ID, "smarthost", h.Name,
			"relay", relay, "reply", replyText(d.Status)}, fix...)...)
		s.reroute(cfg, t)
		return
	}
	queued := s.takeQueued(hopKey{Route: t.key.Route, Dest: h.Name})
	waiting := len(t.rcpts)
	for _, q := range queued {
		waiting += len(q.rcpts)
	}
	s.log.Error("smart host is down; mail goes to the next smart host, or waits", append([]any{"smarthost", h.Name,
		"relay", relay, "reply", replyText(d.Status), "pause", pause.String(), "waiting", waiting}, fix...)...)
	if s.obs.OnSmarthostDown != nil {
		s.obs.OnSmarthostDown(h.Name, replyText(d.Status), waiting)
	}
	s.reroute(cfg, append([]*txn{t}, queued...)...)
}

// takeQueued removes every transaction waiting in key's queue (their host went down or over its budget).
func (s *Scheduler) takeQueued(key hopKey) []*txn {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hops[key]
	if h == nil {
		return nil
	}
	out := h.queue
	h.queue = nil
	s.waiting -= len(out)
	return out
}
