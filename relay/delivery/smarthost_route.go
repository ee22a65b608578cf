package delivery

import (
	"time"

	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// Which smart host takes a transaction. Recipients routed through the smart hosts are claimed as one transaction
// per message (per pinned host, for via = "smarthost:NAME"); before it waits for a session, each transaction
// gets a host: the first of the list that is up, within its sending budget and allowed to carry the sender
// (choose). It then waits in that host's queue (hopKey{Smarthost, NAME}), whose sessions are bounded by the
// host's max_connections. The choice is made again whenever it may have changed: when a session takes the
// transaction, and after a failure, when the transaction goes on to the next host at once (reroute). A
// transaction with more recipients than the host takes at once is split.

// smarthostTxn is a smart-host transaction's routing during one attempt.
type smarthostTxn struct {
	pinned string               // via = "smarthost:NAME": this host only, never another
	tried  map[string]triedHost // hosts that failed this attempt, by name
	res    *reservation         // what it counted in its host's windows
}

// triedHost is what a host said when it could not take the transaction.
type triedHost struct {
	d     decision
	relay string
	class hostClass
}

// choice is choose's answer: a host, or the verdict for the transaction when none can take it now.
type choice struct {
	host    *Smarthost
	verdict decision
	relay   string // the relay the verdict's reply came from, "none" when no host was asked
}

// candidates are the hosts t may use, in order.
func candidates(cfg *Settings, t *txn) []*Smarthost {
	if t.sh.pinned != "" {
		if h := cfg.smarthost(t.sh.pinned); h != nil {
			return []*Smarthost{h}
		}
		// The host was removed by a reload (and with it, surely, the rule): the list takes the mail.
	}
	out := make([]*Smarthost, len(cfg.Smarthosts))
	for i := range cfg.Smarthosts {
		out[i] = &cfg.Smarthosts[i]
	}
	return out
}

// choose returns the host that takes t now: the first candidate that allows the sender, has not failed this
// attempt, is up (or due for its probe, which nobody else is making) and within its budget for t. A host over
// its budget with when_limited = "wait", or a pinned one, keeps the mail: the verdict is then to wait for its
// window. Without a host the verdict is a deferral, except when every host that may carry the sender refused
// it: then the last refusal bounces.
func (b *hostBook) choose(cfg *Settings, t *txn, now time.Time) choice {
	b.mu.Lock()
	defer b.mu.Unlock()
	hosts := candidates(cfg, t)
	pinned := t.sh.pinned != "" && len(hosts) == 1
	var (
		eligible, refusedSender int
		last                    *choice
		limited                 time.Time
		limitedBy               *Smarthost
		probed                  *Smarthost // a host whose pause is over, being probed by another transaction
	)
	for _, h := range hosts {
		if !h.allowsSender(t.msg.Envelope.From) {
			continue
		}
		eligible++
		if tr, ok := t.sh.tried[h.Name]; ok {
			if tr.class == classSender {
				refusedSender++
			}
			last = &choice{verdict: tr.d, relay: tr.relay}
			continue
		}
		st := b.state(h.Name, now)
		if st.down(now) {
			last = &choice{verdict: downVerdict(h, st), relay: "none"}
			continue
		}
		if st.halfOpen(now) && st.probingBy(t, now) {
			if probed == nil {
				probed = h
			}
			continue
		}
		st.msgs.prune(now)
		st.rcpts.prune(now)
		if until := st.limitedUntil(h, now, min(len(t.rcpts), h.chunk())); until.After(now) {
			if h.Wait || pinned {
				return choice{verdict: waitVerdict(h, until), relay: "none"}
			}
			if limited.IsZero() || until.Before(limited) {
				limited, limitedBy = until, h
			}
			continue
		}
		return choice{host: h}
	}
	switch {
	case eligible == 0:
		return choice{relay: "none", verdict: decision{Outcome: Deferred, Status: ours(smtpstatus.Enhanced{4, 7, 0},
			"no smart host may carry mail from <"+t.msg.Envelope.From+">: add its domain to the senders of a "+
				"[[smarthosts]] entry, or leave senders empty on one")}}
	case refusedSender == eligible && last != nil:
		return *last // every host refused the sender: the refusal stands
	case probed != nil:
		// No other host: wait behind the probe in the host's queue (one session while it is probed), rather
		// than a deferral for the whole backoff when the probe may succeed in a moment.
		return choice{host: probed}
	case last != nil:
		c := *last
		if c.verdict.Outcome == Bounced {
			// A sender refusal while other hosts could not be asked: not final yet.
			c.verdict.Outcome = Deferred
			if c.verdict.Status.Enhanced != (smtpstatus.Enhanced{}) {
				c.verdict.Status.Enhanced[0] = 4
			}
		}
		return c
	case limitedBy != nil:
		return choice{verdict: waitVerdict(limitedBy, limited), relay: "none"}
	}
	return choice{relay: "none", verdict: decision{Outcome: Deferred, Status: ours(stNoAnswer, "no smart host to try")}}
}

// downVerdict defers mail for a host in its pause, with the failure that put it there.
func downVerdict(h *Smarthost, st *hostState) decision {
	enh := st.lastStatus.Enhanced
	if enh[0] != 4 {
		enh = stNoAnswer
	}
	return decision{Outcome: Deferred, Status: ours(enh, "smart host "+h.Name+" is down since "+
		st.downSince.UTC().Format(time.RFC3339)+" (next try "+st.downUntil.UTC().Format("15:04:05")+" UTC): "+st.lastErr)}
}

// waitVerdict keeps mail for a host over its budget until its window frees: not an attempt, nothing tried.
func waitVerdict(h *Smarthost, until time.Time) decision {
	return decision{Outcome: Deferred, RetryAt: until, NoAttempt: true, Status: ours(smtpstatus.Enhanced{4, 4, 5},
		"smart host "+h.Name+" is at its sending limit; waiting until "+until.UTC().Format("15:04:05")+" UTC")}
}

// routeClaimed gives the smart-host transactions of a claim their hosts; transactions no host can take now are
// recorded with the verdict at once. Direct ones pass through.
func (s *Scheduler) routeClaimed(cfg *Settings, txns []*txn) []*txn {
	var out []*txn
	for _, t := range txns {
		if t.key.Route != route.Smarthost {
			out = append(out, t)
			continue
		}
		t.sh.pinned = t.key.Dest
		out = append(out, s.route(cfg, t)...)
	}
	return out
}

// route chooses t's host, splits t into transactions the host takes at once (max_recipients, and the smallest
// recipient budget), and returns them keyed to their hosts; each remainder is routed on its own, since the
// host's budget may not cover it. A transaction without a host is recorded with the verdict.
func (s *Scheduler) route(cfg *Settings, t *txn) []*txn {
	var out []*txn
	for t != nil {
		now := s.now()
		c := s.hosts.choose(cfg, t, now)
		if c.host == nil {
			s.record(cfg, t, resultsFor(t, c.verdict, c.relay), false)
			return out
		}
		h := c.host
		s.hosts.claimProbe(h.Name, t, now)
		var rest *txn
		if n := h.chunk(); len(t.rcpts) > n {
			rest = &txn{msg: t.msg, rcpts: t.rcpts[n:], key: t.key, seq: t.seq,
				sh: smarthostTxn{pinned: t.sh.pinned, tried: cloneTried(t.sh.tried)}}
			t.rcpts = t.rcpts[:n:n]
		}
		t.key = hopKey{Route: route.Smarthost, Dest: h.Name}
		out = append(out, t)
		t = rest
	}
	return out
}

func cloneTried(m map[string]triedHost) map[string]triedHost {
	if m == nil {
		return nil
	}
	out := make(map[string]triedHost, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// reroute chooses again for transactions that left their host's queue (the host failed, went down, is over its
// budget, or is no longer the choice), and queues them first, in their order: they were claimed before
// anything waiting.
func (s *Scheduler) reroute(cfg *Settings, txns ...*txn) {
	var out []*txn
	for _, t := range txns {
		out = append(out, s.route(cfg, t)...)
	}
	s.enqueueFront(out)
}

// still reports whether h is still t's choice (a session takes t from h's queue).
func (s *Scheduler) still(cfg *Settings, h *Smarthost, t *txn, now time.Time) bool {
	c := s.hosts.choose(cfg, t, now)
	return c.host == h
}

// tried marks h as failed for t with d (a copy of t keeps its own map).
func (t *txn) tried(h *Smarthost, d decision, relay string, class hostClass) {
	if t.sh.tried == nil {
		t.sh.tried = map[string]triedHost{}
	}
	t.sh.tried[h.Name] = triedHost{d: d, relay: relay, class: class}
}
