package delivery

import (
	"errors"
	"math/rand/v2"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/dsn"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// txn is one message's recipients for one next hop: they travel in one SMTP transaction.
type txn struct {
	msg   *queue.Message // as committed by the claim
	rcpts []rcptRef
	key   hopKey
	// sh is how a smart-host transaction was routed this attempt (smarthost_route.go); zero for direct mail.
	sh smarthostTxn
	// seq orders transactions by their claim (the scheduler loop numbers them): one that goes on to another smart
	// host keeps its place in that host's queue.
	seq uint64
}

func (s *Scheduler) backoff(cfg *Settings, attempts int) time.Duration {
	j := s.opts.Jitter
	if j == nil {
		j = rand.Int64N
	}
	return Backoff(attempts, cfg.RetryMin, cfg.RetryMax, j)
}

// expired: queue.lifetime has passed since arrival (now - arrival > lifetime). A zero lifetime
// never expires mail.
func expired(m *queue.Message, cfg *Settings, now time.Time) bool {
	lt := cfg.Lifetime
	return lt > 0 && now.Sub(m.Arrival) > lt
}

// expiredStatus is what an expiry records (RFC 3463 X.4.7, Postfix's "status=expired, returned to sender"):
// our status, with the last reply quoted in the text. The DSN keeps the last remote reply as its Diagnostic-Code.
func expiredStatus(cfg *Settings, last smtpstatus.Status) smtpstatus.Status {
	st := ours(stExpired, "delivery time expired after "+config.Duration(cfg.Lifetime).String())
	if r := replyText(last); r != "" {
		st.Text += "; last reply: " + r
	}
	return st
}

// attempt is one recipient's try as it is recorded: the entry in its history, its log line, its DSN line.
type attempt struct {
	At      time.Time
	Route   route.Route // "" when no route was involved (an admin bounce, an expiry at pick-up)
	Relay   string      // "host[ip]:port", "none" or ""
	Outcome Outcome
	Status  smtpstatus.Status
	TLS     string // the log's tls= level
	Policy  string // the recipient's TLS policy that deferred it, if one did
}

// addHistory appends a to r's history, keeping the last queue.MaxHistory entries.
func addHistory(r *queue.Recipient, a attempt) {
	r.History = append(r.History, queue.Attempt{At: a.At, Route: string(a.Route), Relay: a.Relay, Code: a.Status.Code,
		Enhanced: a.Status.Enhanced.String(), Text: a.Status.Text, Outcome: string(a.Outcome), TLS: a.TLS})
	if n := len(r.History) - queue.MaxHistory; n > 0 {
		r.History = append(r.History[:0:0], r.History[n:]...)
	}
}

func lastStatus(r *queue.Recipient) smtpstatus.Status {
	a, ok := r.LastAttempt()
	if !ok {
		return smtpstatus.Status{}
	}
	e, _ := smtpstatus.ParseEnhanced(a.Enhanced)
	return smtpstatus.Status{Code: a.Code, Enhanced: e, Text: a.Text}
}

// fails collects the DSN lines an Update produces.
type fails struct {
	failed, delayed []dsnRcpt
}

// bounce makes r final with the attempt a, recording it and a DSN line. diag is the reply the DSN quotes as
// Diagnostic-Code when it differs from a's status (an expiry quotes the last reply).
func bounce(r *queue.Recipient, a attempt, diag smtpstatus.Status, f *fails) {
	r.State = queue.StateBounced
	var lastRoute route.Route // of the attempt that gave diag (an expiry)
	if last, ok := r.LastAttempt(); ok {
		lastRoute = route.Route(last.Route)
	}
	addHistory(r, a)
	if wantsDSN(r.Notify, "FAILURE") {
		line := dsnLine(r, a)
		if diag.Code != 0 {
			line.Diagnostic = diag.String()
		}
		if line.Fix == "" {
			line.Fix = refusalFor(lastRoute, diag).Fix // an expiry: what the last reply asked to fix
		}
		f.failed = append(f.failed, line)
	}
}

// claim commits the pick-up of snap's due recipients before anything is dialed: each becomes
// active with Attempts+1 and NextAttempt = now + backoff, so a crash leaves a retry for later, never a tight
// loop. Recipients bounced by the admin, or past queue.lifetime, are bounced here with their DSN. It returns
// one transaction per next hop, and whether anything changed (a claim or a bounce).
func (s *Scheduler) claim(cfg *Settings, snap *queue.Message, now time.Time) ([]*txn, bool) {
	var headers []byte
	if dsnAllowed(snap) {
		for _, r := range snap.Recipients {
			if r.BounceNow || ((r.State == queue.StateQueued || r.State == queue.StateDeferred) && expired(snap, cfg, now)) {
				headers = s.headersOf(snap.ID)
				break
			}
		}
	}
	var (
		claimed []int
		results []Result
		final   *queue.Message
	)
	err := s.store.Update(snap.ID, func(m *queue.Message, tx *queue.Tx) error {
		claimed, results, final = nil, nil, m
		var f fails
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State != queue.StateQueued && r.State != queue.StateDeferred {
				continue
			}
			switch {
			case r.BounceNow:
				a := attempt{At: now, Outcome: Bounced, Status: ours(stAdminBounce, "bounced by the administrator")}
				bounce(r, a, smtpstatus.Status{}, &f)
				results = append(results, s.result(m, r, a))
			case r.NextAttempt.After(now):
			case expired(m, cfg, now) && !policyRetryDue(m, r, cfg):
				last := lastStatus(r)
				a := attempt{At: now, Outcome: Expired, Status: expiredStatus(cfg, last)}
				bounce(r, a, last, &f)
				results = append(results, s.result(m, r, a))
			default:
				r.State = queue.StateActive
				r.Attempts++
				r.NextAttempt = now.Add(s.backoff(cfg, r.Attempts))
				claimed = append(claimed, i)
			}
		}
		return s.queueDSNs(tx, cfg, m, &f, headers, now)
	})
	if err != nil {
		if !errors.Is(err, queue.ErrNotFound) {
			s.log.Error("cannot claim recipients", "id", snap.ID, "err", err)
		}
		return nil, false
	}
	for _, r := range results {
		s.logAttempt(r)
	}
	byHop := map[hopKey]*txn{}
	var out []*txn
	for _, i := range claimed {
		r := final.Recipients[i]
		rt := route.Decide(cfg.Routing, final.Envelope.From, r.Addr, s.verdict)
		if rt == route.Direct && s.stayOnSmarthost(cfg, final.Envelope.From, &r, now) {
			rt = route.Smarthost // a receiver refused this host: do not knock again
		}
		key := hopKey{Route: rt}
		switch rt {
		case route.Direct:
			key.Dest = route.Domain(r.Addr)
		case route.Smarthost:
			key.Dest = cfg.Routing.PinnedHost(final.Envelope.From, r.Addr) // "": the list; routeClaimed chooses
		}
		t := byHop[key]
		if t == nil {
			t = &txn{msg: final, key: key}
			byHop[key] = t
			out = append(out, t)
		}
		t.rcpts = append(t.rcpts, rcptRef{Index: i, Addr: r.Addr})
	}
	return out, len(claimed)+len(results) > 0
}

func (s *Scheduler) queueDSNs(tx *queue.Tx, cfg *Settings, m *queue.Message, f *fails, headers []byte, now time.Time) error {
	if !dsnAllowed(m) {
		return nil
	}
	for _, k := range []struct {
		kind  dsn.Kind
		lines []dsnRcpt
	}{{dsn.Failed, f.failed}, {dsn.Delayed, f.delayed}} {
		if len(k.lines) == 0 {
			continue
		}
		if _, err := s.enqueueDSN(tx, cfg, m, k.kind, k.lines, headers, now); err != nil {
			// Without its DSN the bounce still has to be recorded, or the recipients would stay claimed.
			s.log.Error("cannot queue a DSN", "id", m.ID, "err", err)
		}
	}
	return nil
}

// result is the log line's view of r's attempt a.
func (s *Scheduler) result(m *queue.Message, r *queue.Recipient, a attempt) Result {
	return Result{ID: m.ID, Rcpt: r.Addr, Route: a.Route, Relay: a.Relay, Outcome: a.Outcome, Status: a.Status,
		Delay: a.At.Sub(m.Arrival), Attempt: r.Attempts, IsDSN: m.Envelope.IsDSN, TLS: a.TLS, Policy: a.Policy}
}

// record stores the outcome of one transaction's recipients, with their attempt in the history, the DSNs they
// call for (failure, or the one delay warning), and writes their log lines. aborted means the attempt was cut
// by a shutdown: a deferred recipient is due again at once, so nothing waits a backoff for our restart.
func (s *Scheduler) record(cfg *Settings, t *txn, results []rcptResult, aborted bool) {
	now := s.now()
	snap := t.msg
	// Any failure may end in a DSN (a bounce, an expiry, the delay warning, or an admin bounce that arrived
	// during the attempt), and the headers must be read before the Update: read them for every failure.
	var headers []byte
	if dsnAllowed(snap) {
		for _, res := range results {
			if res.Outcome != Sent {
				headers = s.headersOf(snap.ID)
				break
			}
		}
	}
	var (
		logs     []Result
		rerouted bool
	)
	again := s.secondChance(cfg, t, results, now)
	err := s.store.Update(snap.ID, func(m *queue.Message, tx *queue.Tx) error {
		logs, rerouted = nil, false
		var f fails
		for _, res := range results {
			if res.Index >= len(m.Recipients) {
				continue
			}
			r := &m.Recipients[res.Index]
			if r.Addr != res.Addr || r.State != queue.StateActive {
				continue // the admin deleted or changed it meanwhile
			}
			a := attempt{At: now, Route: t.key.Route, Relay: res.Relay, Outcome: res.Outcome, Status: res.Status,
				TLS: res.tls, Policy: res.policy}
			switch {
			case a.Outcome == Sent:
				r.State = queue.StateDelivered
				addHistory(r, a)
			case r.BounceNow && a.Outcome != Bounced:
				addHistory(r, a)
				a.Outcome, a.Status = Bounced, ours(stAdminBounce, "bounced by the administrator")
				bounce(r, attempt{At: now, Outcome: a.Outcome, Status: a.Status}, smtpstatus.Status{}, &f)
			case rerouteRecipient(cfg, t.key.Route, a.Status, m.Envelope.From, r.Addr):
				// Not the recipient's fault: this host was refused. The smart host takes it, at once.
				a.Outcome = Rerouted
				r.State = queue.StateDeferred
				r.NextAttempt = now
				addHistory(r, a)
				rerouted = true
			case a.Outcome == Bounced:
				bounce(r, a, smtpstatus.Status{}, &f)
			case !aborted && expired(m, cfg, now) && again[res.Index]:
				// Its MTA-STS policy changed since: one more attempt under the new one before any bounce.
				r.State, r.NextAttempt = queue.StateDeferred, now
				addHistory(r, a)
			case !aborted && expired(m, cfg, now):
				last := a.Status
				a.Outcome, a.Status = Expired, expiredStatus(cfg, last)
				bounce(r, a, last, &f)
			default:
				r.State = queue.StateDeferred
				switch {
				case aborted:
					r.NextAttempt = now
				case !res.RetryAt.IsZero():
					r.NextAttempt = res.RetryAt // a smart host's window frees then
				default:
					if next := now.Add(s.backoff(cfg, r.Attempts)); next.After(r.NextAttempt) {
						// The claim's next attempt counted from the pick-up; a transaction that waited for a
						// session would otherwise be due again the moment it failed.
						r.NextAttempt = next
					}
				}
				if res.NoAttempt && r.Attempts > 0 {
					r.Attempts-- // nothing was tried: waiting for a window must not grow the backoff
				}
				addHistory(r, a)
				dw := cfg.DelayWarning
				if dw > 0 && !r.DelayWarned && now.Sub(m.Arrival) >= dw && wantsDSN(r.Notify, "DELAY") {
					r.DelayWarned = true
					f.delayed = append(f.delayed, dsnLine(r, a))
				}
			}
			l := s.result(m, r, a)
			if t.key.Route == route.Smarthost {
				l.Smarthost = smarthostOf(res.Relay)
			}
			logs = append(logs, l)
		}
		return s.queueDSNs(tx, cfg, m, &f, headers, now)
	})
	switch {
	case errors.Is(err, queue.ErrNotFound):
		s.log.Info("message deleted while it was being delivered", "id", snap.ID)
	case err != nil:
		s.log.Error("cannot record the outcome; the recipients stay claimed until the next start",
			"id", snap.ID, "err", err)
	}
	for _, l := range logs {
		s.logAttempt(l)
	}
	if rerouted && err == nil {
		s.rerouted(logs)
	}
	s.poke()
}

// release gives claimed recipients back without an attempt (shutdown before their turn): the claim's Attempts+1
// is undone and they are due at once.
func (s *Scheduler) release(t *txn) {
	now := s.now()
	err := s.store.Update(t.msg.ID, func(m *queue.Message, tx *queue.Tx) error {
		for _, ref := range t.rcpts {
			if ref.Index >= len(m.Recipients) {
				continue
			}
			r := &m.Recipients[ref.Index]
			if r.Addr != ref.Addr || r.State != queue.StateActive {
				continue
			}
			if r.Attempts > 0 {
				r.Attempts--
			}
			r.State = queue.StateDeferred
			if r.Attempts == 0 {
				r.State = queue.StateQueued
			}
			r.NextAttempt = now
		}
		return nil
	})
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		s.log.Error("cannot return recipients to the queue; they are retried at the next start", "id", t.msg.ID, "err", err)
	}
}
