package queue

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func TestUpdate_DeliveryLifeCycle(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100; o.Now = clock.now })
	b := body("m", 1000)
	id := put(t, s, b, "a@example.org", "b@example.org")
	waitNotify(t, s)

	// Claim: active, attempt counted, next attempt recorded before dialing. Not due any more.
	retryAt := t0.Add(5 * time.Minute)
	err := s.Update(id, func(m *Message, tx *Tx) error {
		for i := range m.Recipients {
			m.Recipients[i].State = StateActive
			m.Recipients[i].Attempts++
			m.Recipients[i].NextAttempt = retryAt
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if due := mustDue(t, s, t0.Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("active recipients are due: %v", due)
	}
	if _, ok := mustNextDue(t, s); ok {
		t.Fatal("NextDue with only active recipients")
	}
	noNotify(t, s)

	// Outcome: a delivered, b deferred (due in the future: no wake-up).
	err = s.Update(id, func(m *Message, tx *Tx) error {
		m.Recipients[0].State = StateDelivered
		m.Recipients[1].State = StateDeferred
		m.Recipients[1].History = append(m.Recipients[1].History, Attempt{At: t0, Code: 451, Enhanced: "4.7.1", Text: "try later", Outcome: "deferred"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	noNotify(t, s)
	if at, ok := mustNextDue(t, s); !ok || !at.Equal(retryAt) {
		t.Fatalf("NextDue = %v %v, want %v", at, ok, retryAt)
	}
	if due := mustDue(t, s, retryAt.Add(-time.Second), 10); len(due) != 0 {
		t.Fatal("due before its time")
	}
	due := mustDue(t, s, retryAt, 10)
	if len(due) != 1 || due[0].ID != id {
		t.Fatalf("Due at retry time = %v", due)
	}
	if last, ok := due[0].Recipients[1].LastAttempt(); !ok || last.Code != 451 {
		t.Fatalf("history not kept: %+v", due[0].Recipients[1])
	}

	// Illegal change rejected, nothing written.
	err = s.Update(id, func(m *Message, tx *Tx) error {
		m.Recipients[0].State = StateQueued
		m.Recipients[1].Attempts = 99
		return nil
	})
	if !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("delivered -> queued: %v", err)
	}
	if m := mustGet(t, s, id); m.Recipients[1].Attempts != 1 {
		t.Fatal("a rejected update was written")
	}

	// Bounce b with a DSN in the same transaction: the message is gone with its spool file, the DSN is queued
	// and due at once.
	var dsn string
	err = s.Update(id, func(m *Message, tx *Tx) error {
		m.Recipients[1].State = StateBounced
		var err error
		dsn, err = tx.Enqueue(Envelope{IsDSN: true}, rcpts("sender@example.test"), []byte("bounce"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitNotify(t, s)
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finished message still there: %v", err)
	}
	if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finished message's body still there: %v", err)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spool file of a finished message left: %v", files)
	}
	checkBody(t, s, dsn, []byte("bounce"))
	due = mustDue(t, s, t0, 10)
	if len(due) != 1 || due[0].ID != dsn || !due[0].Envelope.IsDSN {
		t.Fatalf("Due = %v, want the DSN", due)
	}
	if err := s.Update("0000000000000", func(*Message, *Tx) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update unknown: %v", err)
	}
}

func TestUpdate_DueInPastWakes(t *testing.T) {
	clock := &fakeClock{t: t0}
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })
	id := put(t, s, body("m", 10), "a@example.org")
	drainNotify(s)
	set := func(to time.Time) {
		t.Helper()
		err := s.Update(id, func(m *Message, tx *Tx) error {
			if m.Recipients[0].State == StateQueued {
				m.Recipients[0].State = StateActive
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Update(id, func(m *Message, tx *Tx) error {
			m.Recipients[0].State = StateDeferred
			m.Recipients[0].NextAttempt = to
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(t0.Add(time.Hour))
	noNotify(t, s)
	set(t0.Add(-time.Second))
	waitNotify(t, s)
}

func TestUpdate_HistoryBounded(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := put(t, s, body("m", 10), "a@example.org")
	for i := range MaxHistory + 5 {
		err := s.Update(id, func(m *Message, tx *Tx) error {
			m.Recipients[0].History = append(m.Recipients[0].History, Attempt{Code: 400 + i})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	m := mustGet(t, s, id)
	h := m.Recipients[0].History
	if len(h) != MaxHistory || h[0].Code != 405 || h[len(h)-1].Code != 400+MaxHistory+4 {
		t.Fatalf("history: %d entries, first %d, last %d", len(h), h[0].Code, h[len(h)-1].Code)
	}
}

// An update function works on a deep copy: what it changes, down to a recipient's NOTIFY list and history,
// leaves the version it started from as it was.
func TestRecord_CloneIsDeep(t *testing.T) {
	r := &record{Message: Message{ID: "x", Recipients: []Recipient{{Addr: "a@example.org", State: StateQueued,
		Notify: []string{"FAILURE"}, History: []Attempt{{Text: "first"}}}}}}
	c := r.clone()
	c.Recipients[0].State = StateActive
	c.Recipients[0].Notify[0] = "NEVER"
	c.Recipients[0].History[0].Text = "changed"
	c.Recipients = append(c.Recipients, Recipient{Addr: "b@example.org"})
	o := r.Recipients
	if len(o) != 1 || o[0].State != StateQueued || o[0].Notify[0] != "FAILURE" || o[0].History[0].Text != "first" {
		t.Fatalf("the original changed with its copy: %+v", o)
	}
}
