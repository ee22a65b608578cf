package queue

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAdmin_Verbs(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100; o.Now = clock.now })
	a := put(t, s, body("a", 1000), "a1@example.org", "a2@example.org") // spooled
	b := put(t, s, body("b", 10), "b@example.org")
	const unknown = "0000000000000"

	// Defer a2 into the future; claim a1 (in flight).
	err := s.Update(a, func(m *Message, tx *Tx) error {
		m.Recipients[0].State = StateActive
		m.Recipients[1].State = StateActive
		return nil
	})
	if err == nil {
		err = s.Update(a, func(m *Message, tx *Tx) error {
			m.Recipients[1].State = StateDeferred
			m.Recipients[1].NextAttempt = t0.Add(time.Hour)
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	drainNotify(s)

	// Hold: unknown IDs named, the known ones still held.
	n, err := s.Hold(Selector{IDs: []string{a, unknown, b}})
	if n != 2 || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), unknown) {
		t.Fatalf("Hold = %d, %v", n, err)
	}
	ma := mustGet(t, s, a)
	if r := ma.Recipients; r[0].State != StateActive || !r[0].HoldPending || r[1].State != StateHold || r[1].HeldFrom != StateDeferred {
		t.Fatalf("after Hold: %+v", r)
	}
	if due := mustDue(t, s, t0.Add(48*time.Hour), 10); len(due) != 0 {
		t.Fatalf("held messages are due: %d", len(due))
	}
	noNotify(t, s)

	// The attempt in flight ends deferred: the pending hold parks it.
	err = s.Update(a, func(m *Message, tx *Tx) error {
		m.Recipients[0].State = StateDeferred
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ma = mustGet(t, s, a)
	if r := ma.Recipients[0]; r.State != StateHold || r.HeldFrom != StateDeferred || r.HoldPending {
		t.Fatalf("pending hold not applied: %+v", r)
	}

	// Release: back to where they were held from, due now, wakes the scheduler.
	n, err = s.Release(Selector{All: true})
	if n != 2 || err != nil {
		t.Fatalf("Release = %d, %v", n, err)
	}
	waitNotify(t, s)
	ma = mustGet(t, s, a)
	mb := mustGet(t, s, b)
	if ma.Recipients[1].State != StateDeferred || !ma.Recipients[1].NextAttempt.Equal(t0) || mb.Recipients[0].State != StateQueued {
		t.Fatalf("after Release: %+v / %+v", ma.Recipients, mb.Recipients)
	}

	// Retry: future attempts become due now.
	s.Update(a, func(m *Message, tx *Tx) error {
		m.Recipients[0].NextAttempt = t0.Add(time.Hour)
		m.Recipients[1].NextAttempt = t0.Add(time.Hour)
		return nil
	})
	drainNotify(s)
	if due := mustDue(t, s, t0, 10); len(due) != 1 || due[0].ID != b {
		t.Fatalf("before Retry: %d due", len(due))
	}
	if n, err := s.Retry(Selector{IDs: []string{a}}); n != 1 || err != nil {
		t.Fatalf("Retry = %d, %v", n, err)
	}
	waitNotify(t, s)
	if due := mustDue(t, s, t0, 10); len(due) != 2 {
		t.Fatalf("after Retry: %d due", len(due))
	}

	// Bounce marks; Delete removes records and spool files.
	if n, err := s.Bounce(Selector{IDs: []string{b}}); n != 1 || err != nil {
		t.Fatalf("Bounce = %d, %v", n, err)
	}
	if mb := mustGet(t, s, b); !mb.Recipients[0].BounceNow {
		t.Fatal("BounceNow not set")
	}
	n, err = s.Delete(Selector{IDs: []string{a, unknown}})
	if n != 1 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spool after Delete: %v", files)
	}
	if n, err := s.Delete(Selector{All: true}); n != 1 || err != nil {
		t.Fatalf("Delete all = %d, %v", n, err)
	}
	if st := mustStats(t, s); st.Messages != 0 {
		t.Fatalf("Stats after delete: %+v", st)
	}
	if _, ok := mustNextDue(t, s); ok {
		t.Fatal("due index not empty after delete")
	}
	if _, err := s.Retry(Selector{}); err == nil {
		t.Fatal("empty selector accepted")
	}
}

// The verbs work in transactions of verbBatch messages, with -all as with a list of IDs: every message is
// handled once, whatever the batch boundaries.
func TestAdmin_VerbsInBatches(t *testing.T) {
	defer func(n int) { verbBatch = n }(verbBatch)
	verbBatch = 3
	clock := &fakeClock{t: t0}
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })
	var ids []string
	for range 10 {
		ids = append(ids, put(t, s, body("b", 10), "r@example.org"))
	}
	const unknown = "0000000000000"
	if n, err := s.Hold(Selector{IDs: append(slices.Clone(ids), unknown)}); n != 10 || !errors.Is(err, ErrNotFound) ||
		!strings.Contains(err.Error(), unknown) {
		t.Fatalf("Hold of 10 IDs and an unknown one = %d, %v", n, err)
	}
	if st := mustStats(t, s); st.ByState[StateHold] != 10 {
		t.Fatalf("after Hold: %v", st.ByState)
	}
	clock.t = t0.Add(time.Hour)
	if n, err := s.Release(Selector{All: true}); n != 10 || err != nil {
		t.Fatalf("Release -all = %d, %v", n, err)
	}
	if due := mustDue(t, s, clock.t, 100); len(due) != 10 {
		t.Fatalf("%d due after Release -all", len(due))
	}
	if n, err := s.Retry(Selector{All: true}); n != 10 || err != nil {
		t.Fatalf("Retry -all = %d, %v", n, err)
	}
	checkInvariants(t, s)
	if n, err := s.Delete(Selector{All: true}); n != 10 || err != nil {
		t.Fatalf("Delete -all = %d, %v", n, err)
	}
	if n, err := s.Retry(Selector{All: true}); n != 0 || err != nil {
		t.Fatalf("Retry -all of an empty queue = %d, %v", n, err)
	}
	checkInvariants(t, s)
}
