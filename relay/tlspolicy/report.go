package tlspolicy

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"ptrelay/queue"
)

// TLS-RPT (RFC 8460) reports count, per recipient domain, per UTC day and per policy type, the sessions that
// met the policy and the failures by result type. ptrelay keeps those counts (sending reports comes later):
// in memory as sessions happen, merged into the queue database's "tlsrpt" state table by Flush (every minute
// and at shutdown), kept for ReportDays.

// ReportsTable is the queue database's table of TLS-RPT counts; the key is "YYYY-MM-DD/domain/type".
const ReportsTable = "tlsrpt"

// ReportDays is how long daily counts are kept.
const ReportDays = 14

// DayCounts are one domain's sessions of one policy type on one day.
type DayCounts struct {
	Day      string         `json:"day"` // "2026-03-01", UTC
	Domain   string         `json:"domain"`
	Type     string         `json:"type"` // "sts" | "tlsa"
	Success  int            `json:"success"`
	Failures map[string]int `json:"failures,omitempty"` // by result type
}

// Failed is the number of failed sessions.
func (c DayCounts) Failed() int {
	n := 0
	for _, v := range c.Failures {
		n += v
	}
	return n
}

func (c DayCounts) key() string { return c.Day + "/" + c.Domain + "/" + c.Type }

// Reports collects the counts. It is safe for concurrent use.
type Reports struct {
	store *queue.Store // nil: memory only
	now   func() time.Time

	mu      sync.Mutex
	pending map[string]*DayCounts // not yet merged into the store
}

// NewReports returns counts kept in store (nil: in memory only, until the process ends).
func NewReports(store *queue.Store, now func() time.Time) *Reports {
	if now == nil {
		now = time.Now
	}
	return &Reports{store: store, now: now, pending: map[string]*DayCounts{}}
}

// Add counts one session.
func (r *Reports) Add(s Session) {
	c := DayCounts{Day: r.now().UTC().Format(time.DateOnly), Domain: s.Domain, Type: s.Type}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[c.key()]
	if p == nil {
		p = &c
		r.pending[c.key()] = p
	}
	if s.Result == Success {
		p.Success++
		return
	}
	if p.Failures == nil {
		p.Failures = map[string]int{}
	}
	p.Failures[s.Result]++
}

// Flush merges the counts gathered since the last Flush into the store and drops days older than ReportDays.
// On a storage error the counts stay pending for the next Flush.
func (r *Reports) Flush() error {
	if r.store == nil {
		return nil
	}
	r.mu.Lock()
	pending := r.pending
	r.pending = map[string]*DayCounts{}
	r.mu.Unlock()
	cutoff := r.now().UTC().AddDate(0, 0, -ReportDays).Format(time.DateOnly)
	err := r.store.UpdateState(ReportsTable, func(t queue.StateTable) error {
		for k, p := range pending {
			var c DayCounts
			if v := t.Get(k); v != nil {
				_ = json.Unmarshal(v, &c)
			}
			c.Day, c.Domain, c.Type = p.Day, p.Domain, p.Type
			c.Success += p.Success
			for res, n := range p.Failures {
				if c.Failures == nil {
					c.Failures = map[string]int{}
				}
				c.Failures[res] += n
			}
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := t.Put(k, b); err != nil {
				return err
			}
		}
		var old []string
		_ = t.ForEach(func(k string, _ []byte) error {
			if day, _, _ := strings.Cut(k, "/"); day < cutoff {
				old = append(old, k)
			}
			return nil
		})
		for _, k := range old {
			if err := t.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.mu.Lock()
		for k, p := range pending {
			if q := r.pending[k]; q != nil {
				p.Success += q.Success
				for res, n := range q.Failures {
					if p.Failures == nil {
						p.Failures = map[string]int{}
					}
					p.Failures[res] += n
				}
			}
			r.pending[k] = p
		}
		r.mu.Unlock()
	}
	return err
}

// Since returns the counts of the days from day (inclusive, "YYYY-MM-DD"), stored and pending together, by
// day, then domain, then type.
func (r *Reports) Since(day string) ([]DayCounts, error) {
	all := map[string]DayCounts{}
	if r.store != nil {
		err := ReadReports(r.store, day, func(c DayCounts) { all[c.key()] = c })
		if err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	for k, p := range r.pending {
		if p.Day < day {
			continue
		}
		c := all[k]
		c.Day, c.Domain, c.Type = p.Day, p.Domain, p.Type
		c.Success += p.Success
		if len(p.Failures) > 0 {
			f := maps.Clone(c.Failures)
			if f == nil {
				f = map[string]int{}
			}
			for res, n := range p.Failures {
				f[res] += n
			}
			c.Failures = f
		}
		all[k] = c
	}
	r.mu.Unlock()
	out := slices.Collect(maps.Values(all))
	slices.SortFunc(out, func(a, b DayCounts) int { return strings.Compare(a.key(), b.key()) })
	return out, nil
}

// ReadReports calls fn with the stored counts of the days from day: `ptrelay status` without a daemon.
func ReadReports(store *queue.Store, day string, fn func(DayCounts)) error {
	return store.ViewState(ReportsTable, func(t queue.StateTable) error {
		return t.ForEach(func(k string, v []byte) error {
			if d, _, _ := strings.Cut(k, "/"); d < day {
				return nil
			}
			var c DayCounts
			if json.Unmarshal(v, &c) == nil {
				fn(c)
			}
			return nil
		})
	})
}
