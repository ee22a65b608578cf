package delivery

import (
	"context"
	"encoding/json"
	"time"

	"ptrelay/queue"
)

// The smart hosts' sending windows are kept in the queue database (state table windowsTable, one record per host
// name), so that a restart does not hand out a day's budget a second time. They are written in one transaction
// every windowFlushEvery while they changed, and when delivery stops; a crash loses at most the sends counted
// since the last write (a minute's worth). The records are minute buckets of the last 24 hours. Health (down,
// limited by a quota refusal) is not kept: after a restart every host is tried again.

const (
	windowsTable     = "smarthost.windows"
	windowFlushEvery = time.Minute
)

type storedWindows struct {
	V     int        `json:"v"`
	Msgs  [][2]int64 `json:"msgs,omitempty"`
	Rcpts [][2]int64 `json:"rcpts,omitempty"`
}

// restore reads name's stored windows into st (the book's lock is held).
func (b *hostBook) restore(name string, st *hostState, now time.Time) {
	if b.store == nil || b.loaded[name] {
		return
	}
	b.loaded[name] = true
	var raw []byte
	err := b.store.ViewState(windowsTable, func(t queue.StateTable) error {
		raw = t.Get(name)
		return nil
	})
	if err != nil {
		b.log.Error("cannot read the smart host's sending windows; they start empty", "smarthost", name, "err", err)
		return
	}
	if raw == nil {
		return
	}
	var w storedWindows
	if err := json.Unmarshal(raw, &w); err != nil || w.V != 1 {
		b.log.Warn("ignoring a damaged record of sending windows", "smarthost", name, "err", err)
		return
	}
	st.msgs.restore(w.Msgs, now)
	st.rcpts.restore(w.Rcpts, now)
}

// flush writes the windows that changed, and removes the records of hosts no longer configured, in one
// transaction. known lists the configured names.
func (b *hostBook) flush(now time.Time, known map[string]bool) error {
	if b.store == nil {
		return nil
	}
	b.mu.Lock()
	recs := map[string][]byte{}
	for name, st := range b.hosts {
		if !st.dirty {
			continue
		}
		st.msgs.prune(now)
		st.rcpts.prune(now)
		var v []byte
		if !st.msgs.empty() || !st.rcpts.empty() {
			v, _ = json.Marshal(storedWindows{V: 1, Msgs: st.msgs.minutes(), Rcpts: st.rcpts.minutes()})
		}
		recs[name] = v
		st.dirty = false
	}
	b.mu.Unlock()
	var stale []string
	if err := b.store.ViewState(windowsTable, func(t queue.StateTable) error {
		return t.ForEach(func(k string, _ []byte) error {
			if !known[k] {
				stale = append(stale, k)
			}
			return nil
		})
	}); err != nil {
		return err
	}
	if len(recs) == 0 && len(stale) == 0 {
		return nil
	}
	err := b.store.UpdateState(windowsTable, func(t queue.StateTable) error {
		for name, v := range recs {
			var err error
			if v == nil {
				err = t.Delete(name)
			} else {
				err = t.Put(name, v)
			}
			if err != nil {
				return err
			}
		}
		for _, name := range stale {
			if err := t.Delete(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.mu.Lock()
		for name := range recs {
			if st := b.hosts[name]; st != nil {
				st.dirty = true // try again at the next flush
			}
		}
		b.mu.Unlock()
	}
	return err
}

// flushWindows writes the sending windows that changed (on a timer while Run runs, and once when it stops).
func (s *Scheduler) flushWindows() {
	known := map[string]bool{}
	for _, h := range s.cfg.Load().Smarthosts {
		known[h.Name] = true
	}
	if err := s.hosts.flush(s.now(), known); err != nil {
		s.log.Error("cannot write the smart hosts' sending windows to the queue database; retrying in a minute", "err", err)
	}
}

// windowFlusher runs flushWindows every windowFlushEvery until ctx is done.
func (s *Scheduler) windowFlusher(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(windowFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.flushWindows()
		}
	}
}
