package delivery

import (
	"time"

	"ptrelay/relay/route"
)

// SmarthostStatus is what `ptrelay status`, the metrics and the web console show of one smart host.
type SmarthostStatus struct {
	Name    string
	Address string
	// State is "up", "down" (in its pause), "probing" (its pause is over: the next delivery decides) or
	// "limited" (up, but over a sending budget or refused for its quota until LimitedUntil).
	State        string
	DownSince    time.Time // zero while up
	DownUntil    time.Time // the end of the pause
	LimitedUntil time.Time // zero when not limited
	LastError    string
	LastErrorAt  time.Time
	Sessions     int // open now
	MaxSessions  int // max_connections
	Budgets      []Budget
}

// Budget is one sending window's use: "7412/10000 rcpt 24h".
type Budget struct {
	Kind   string        // "msg" or "rcpt"
	Window time.Duration // the window's length
	Used   int
	Limit  int
}

// Remaining is what the window still allows.
func (b Budget) Remaining() int { return max(b.Limit-b.Used, 0) }

// SmarthostStatus returns the state of every configured smart host, in the list's order.
func (s *Scheduler) SmarthostStatus() []SmarthostStatus {
	cfg := s.cfg.Load()
	now := s.now()
	sessions := map[string]int{}
	s.mu.Lock()
	for k, h := range s.hops {
		if k.Route == route.Smarthost {
			sessions[k.Dest] = h.sessions
		}
	}
	s.mu.Unlock()
	b := s.hosts
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []SmarthostStatus
	for i := range cfg.Smarthosts {
		h := &cfg.Smarthosts[i]
		st := b.state(h.Name, now)
		st.msgs.prune(now)
		st.rcpts.prune(now)
		hs := SmarthostStatus{Name: h.Name, Address: h.Address, State: "up", LastError: st.lastErr,
			LastErrorAt: st.lastErrAt, Sessions: sessions[h.Name], MaxSessions: h.MaxConnections}
		switch {
		case st.down(now):
			hs.State, hs.DownSince, hs.DownUntil = "down", st.downSince, st.downUntil
		case st.halfOpen(now):
			hs.State, hs.DownSince, hs.DownUntil = "probing", st.downSince, st.downUntil
		}
		if until := st.limitedUntil(h, now, 1); until.After(now) {
			hs.LimitedUntil = until
			if hs.State == "up" {
				hs.State = "limited"
			}
		}
		for _, r := range h.MessageRate {
			hs.Budgets = append(hs.Budgets, Budget{Kind: "msg", Window: r.Per, Used: st.msgs.sum(now, r.Per), Limit: r.N})
		}
		for _, r := range h.RecipientRate {
			hs.Budgets = append(hs.Budgets, Budget{Kind: "rcpt", Window: r.Per, Used: st.rcpts.sum(now, r.Per), Limit: r.N})
		}
		out = append(out, hs)
	}
	return out
}
