package alerts

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"ptrelay/queue"
)

// The state tables in the queue database (queue.Store.UpdateState). Conditions are one record per key, so a
// change writes only its own; the book (outbox, rounds, digest lines, channel health) is one small record;
// pending webhook deliveries are one record per webhook-id.
const (
	TableConditions = "alerts.conditions"
	TableBook       = "alerts.book"
	TableWebhook    = "alerts.webhook"
	bookKey         = "book"
)

// StateStore is the part of *queue.Store the alerts keep their state in.
type StateStore interface {
	ViewState(table string, fn func(queue.StateTable) error) error
	UpdateState(table string, fn func(queue.StateTable) error) error
}

var _ StateStore = (*queue.Store)(nil)

// Changes returns what changed since the last call: condition records by key (a nil value means deleted) and
// the book (nil when unchanged). Changes of words only are included when all is true.
func (m *Machine) Changes(all bool) (conds map[string][]byte, bk []byte, err error) {
	conds = map[string][]byte{}
	if all {
		for key := range m.soft {
			m.dirty[key] = true
		}
		clear(m.soft)
	}
	for key := range m.dirty {
		delete(m.soft, key)
		st, ok := m.conds[key]
		if !ok {
			conds[key] = nil
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			return nil, nil, err
		}
		conds[key] = b
	}
	if m.bookDirty {
		if bk, err = json.Marshal(&m.b); err != nil {
			return nil, nil, err
		}
	}
	clear(m.dirty)
	m.bookDirty = false
	return conds, bk, nil
}

// LoadMachine rebuilds a machine from its records. A condition that held before the restart keeps its episode
// (nothing is told again) and gets a fresh Expire period, since nothing could raise it while ptrelay was down.
// Records that do not decode are skipped and reported.
func LoadMachine(s Settings, now time.Time, conds map[string][]byte, bk []byte) (*Machine, []error) {
	m := NewMachine(s, now)
	m.bookDirty = false
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(conds)) {
		st := &cond{}
		if err := json.Unmarshal(conds[key], st); err != nil || st.C.Key() != key {
			errs = append(errs, fmt.Errorf("alert condition %q: unreadable record dropped (%v)", key, err))
			m.touch(key)
			continue
		}
		if st.Active {
			st.LastSeen = now
		}
		m.conds[key] = st
	}
	if bk != nil {
		if err := json.Unmarshal(bk, &m.b); err != nil {
			errs = append(errs, fmt.Errorf("alert book: unreadable record reset (%v)", err))
			m.b = book{DigestLast: now}
			m.bookDirty = true
		}
	} else {
		m.bookDirty = true // the digest period starts now; write it down
	}
	if m.b.DigestLast.IsZero() {
		m.b.DigestLast = now
		m.bookDirty = true
	}
	return m, errs
}

// loadState reads the machine's records from st.
func loadState(st StateStore) (conds map[string][]byte, bk []byte, err error) {
	conds = map[string][]byte{}
	err = st.ViewState(TableConditions, func(t queue.StateTable) error {
		return t.ForEach(func(k string, v []byte) error {
			conds[k] = append([]byte(nil), v...)
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	err = st.ViewState(TableBook, func(t queue.StateTable) error {
		bk = t.Get(bookKey)
		return nil
	})
	return conds, bk, err
}

// saveState writes the changes of Changes.
func saveState(st StateStore, conds map[string][]byte, bk []byte) error {
	if len(conds) > 0 {
		err := st.UpdateState(TableConditions, func(t queue.StateTable) error {
			for k, v := range conds {
				var err error
				if v == nil {
					err = t.Delete(k)
				} else {
					err = t.Put(k, v)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if bk != nil {
		return st.UpdateState(TableBook, func(t queue.StateTable) error { return t.Put(bookKey, bk) })
	}
	return nil
}

// ReadAlerts lists the conditions recorded in st, for `ptrelay alerts list` when no daemon runs: what held when
// the daemon stopped.
func ReadAlerts(st StateStore, s Settings) ([]Alert, error) {
	conds, bk, err := loadState(st)
	if err != nil {
		return nil, err
	}
	m, _ := LoadMachine(s, time.Now(), conds, bk)
	return m.Alerts(), nil
}

// DigestDue returns when the next digest is due; zero when digests are off.
func (m *Machine) DigestDue() time.Time {
	switch m.s.Digest {
	case "daily":
		return nextDigest(m.b.DigestLast, false, m.s.loc())
	case "weekly":
		return nextDigest(m.b.DigestLast, true, m.s.loc())
	}
	return time.Time{}
}

// nextDigest is the first digest time after last: digestHour local time, on a Monday for weekly digests.
func nextDigest(last time.Time, weekly bool, loc *time.Location) time.Time {
	t := last.In(loc)
	d := time.Date(t.Year(), t.Month(), t.Day(), digestHour, 0, 0, 0, loc)
	if !d.After(t) {
		d = d.AddDate(0, 0, 1)
	}
	for weekly && d.Weekday() != time.Monday {
		d = d.AddDate(0, 0, 1)
	}
	return d
}

// TakeDigest returns the digest when one is due at now, and starts the next period. facts are lines the
// daemon adds about itself (verdicts, queue counts). The digest goes out even when all is well: its absence
// is what tells the admin that alerting itself is broken.
func (m *Machine) TakeDigest(now time.Time, facts []string) (Notice, bool) {
	due := m.DigestDue()
	if due.IsZero() || now.Before(due) {
		return Notice{}, false
	}
	loc := m.s.loc()
	var holding []Alert
	for _, a := range m.Alerts() {
		if a.State != "pending" {
			holding = append(holding, a)
		}
	}
	n := Notice{ID: m.newID(), Key: string(EventDigest), Event: EventDigest, Kind: KindDigest, Status: StatusResolved,
		Severity: Info, Since: m.b.DigestLast, At: now,
		Details: map[string]string{"conditions": itoa(len(holding)), "period_start": m.b.DigestLast.UTC().Format(time.RFC3339)}}
	n.Summary = "digest for " + m.s.Hostname + ": all is well"
	if len(holding) > 0 {
		n.Status = StatusFiring
		n.Summary = "digest for " + m.s.Hostname + ": " + itoa(len(holding)) + " " + plural(len(holding), "condition") + " " +
			map[bool]string{true: "holds", false: "hold"}[len(holding) == 1]
	}
	n.Lines = append(n.Lines, "Conditions that hold now:")
	if len(holding) == 0 {
		n.Lines = append(n.Lines, "  none")
	}
	for _, a := range holding {
		n.Lines = append(n.Lines, "  - ["+a.Severity.String()+"] "+a.Summary+" (since "+stamp(a.Since, loc)+")")
	}
	if len(facts) > 0 {
		n.Lines = append(n.Lines, "", "Now:")
		for _, f := range facts {
			n.Lines = append(n.Lines, "  "+f)
		}
	}
	n.Lines = append(n.Lines, "", "Since "+stamp(m.b.DigestLast, loc)+":")
	if len(m.b.Notes) == 0 {
		n.Lines = append(n.Lines, "  nothing to report")
	}
	if m.b.NotesDropped > 0 {
		n.Lines = append(n.Lines, "  ("+itoa(m.b.NotesDropped)+" older lines left out)")
	}
	for _, note := range m.b.Notes {
		n.Lines = append(n.Lines, "  "+stamp(note.At, loc)+"  "+note.Text)
	}
	n.Details["lines"] = itoa(len(m.b.Notes))
	m.b.Notes, m.b.NotesDropped, m.b.DigestLast = nil, 0, now
	m.bookDirty = true
	return n, true
}
