package queue

import (
	"slices"
	"testing"
	"time"
)

func TestDue_OrderAndStates(t *testing.T) {
	clock := &fakeClock{t: t0}
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })
	commitAt := func(next time.Time, addr string) string {
		w, _ := s.NewWriter()
		w.Write([]byte("x"))
		id, err := w.Commit(Envelope{}, []Recipient{{Addr: addr, State: StateQueued, NextAttempt: next}})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	late := commitAt(t0.Add(2*time.Hour), "late@example.org")
	early := commitAt(t0.Add(time.Hour), "early@example.org")
	now := commitAt(time.Time{}, "now@example.org") // zero: due at arrival
	held := commitAt(time.Time{}, "held@example.org")
	if _, err := s.Hold(Selector{IDs: []string{held}}); err != nil {
		t.Fatal(err)
	}

	ids := func(ms []*Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	cases := []struct {
		at   time.Time
		max  int
		want []string
	}{
		{t0, 10, []string{now}},
		{t0.Add(time.Hour), 10, []string{now, early}},
		{t0.Add(3 * time.Hour), 10, []string{now, early, late}},
		{t0.Add(3 * time.Hour), 2, []string{now, early}},
	}
	for _, c := range cases {
		got, err := s.Due(c.at, c.max)
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); !slices.Equal(g, c.want) {
			t.Errorf("Due(%v, %d) = %v, want %v", c.at, c.max, g, c.want)
		}
	}
	if at, ok := mustNextDue(t, s); !ok || !at.Equal(t0) {
		t.Fatalf("NextDue = %v %v, want %v", at, ok, t0)
	}
	// An admin bounce makes the late message due first, whatever its NextAttempt.
	if n, err := s.Bounce(Selector{IDs: []string{late}}); n != 1 || err != nil {
		t.Fatalf("Bounce = %d, %v", n, err)
	}
	got := mustDue(t, s, t0.Add(-time.Hour), 10)
	if len(got) != 1 || got[0].ID != late || !got[0].Recipients[0].BounceNow {
		t.Fatalf("after Bounce, Due = %v", ids(got))
	}
}
