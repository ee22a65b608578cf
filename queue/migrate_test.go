package queue

import (
	"bytes"
	"maps"
	"testing"
)

// An upgraded daemon opens a queue written by the previous version (testdata/schema1, see its README): read-only
// it is listed and counted by a scan; the first read-write Open migrates it (active index and counts built,
// the interrupted attempt recovered) with the counts right, and later opens find it current.
func TestMigrate_Schema1(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "testdata/schema1", dir)
	want := map[State]int{StateQueued: 5, StateActive: 1, StateDeferred: 2, StateHold: 1, StateDelivered: 1}

	ro := openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	st, err := ro.Stats()
	if err != nil || st.Messages != 7 || st.Corrupt != 1 || !maps.Equal(st.ByState, want) {
		t.Fatalf("read-only Stats of schema 1 = %+v, %v", st, err)
	}
	if l := mustList(t, ro); len(l) != 7 {
		t.Fatalf("read-only List = %d messages", len(l))
	}
	ro.Close()

	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	checkInvariants(t, s) // counts and indexes agree with a scan of what migration left
	want[StateActive], want[StateDeferred] = 0, 3
	delete(want, StateActive)
	if st := mustStats(t, s); st.Messages != 7 || st.Corrupt != 1 || !maps.Equal(st.ByState, want) {
		t.Fatalf("Stats after migration = %+v, want %v", st, want)
	}
	m, err := s.Get("6C6H88T9K7400")
	if err != nil || m.Recipients[0].State != StateDeferred || m.Recipients[0].Attempts != 1 {
		t.Fatalf("the interrupted attempt: %+v, %v", m, err)
	}
	checkBody(t, s, "6C6H88T9EBW00", bytes.Repeat([]byte("x"), 1000))
	checkBody(t, s, "6C6H88T94GR00", bytes.Repeat([]byte("x"), 50))
	if c := mustCorrupt(t, s); len(c) != 1 || c[0].Key != "6C6H88T9J9000" {
		t.Fatalf("quarantine = %v", c)
	}
	s.Close()
	rawDB(t, dir, func(b buckets) {
		if v := string(b.meta.Get(keySchema)); v != "2" {
			t.Errorf("schema after migration = %q", v)
		}
		if b.meta.Get(keyCounts) == nil || b.active == nil {
			t.Error("migration left no counts or no active index")
		}
	})

	s = openTest(t, dir)
	checkInvariants(t, s)
	if st := mustStats(t, s); st.Messages != 7 || !maps.Equal(st.ByState, want) {
		t.Fatalf("Stats after a second open = %+v", st)
	}
}
