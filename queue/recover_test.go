package queue

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rawDB opens the database file directly, to damage it the way a crash or a bug would.
func rawDB(t *testing.T, dir string, fn func(b buckets)) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, dbName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { fn(bucketsOf(tx)); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestRecover_ActiveBecomesDeferred(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	s := openTest(t, dir, func(o *Options) { o.Now = clock.now })
	id := put(t, s, body("m", 10), "a@example.org", "b@example.org", "c@example.org")
	retryAt := t0.Add(10 * time.Minute)
	err := s.Update(id, func(m *Message, tx *Tx) error {
		for i := range m.Recipients {
			m.Recipients[i].State = StateActive
			m.Recipients[i].NextAttempt = retryAt
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(Selector{IDs: []string{id}}); err != nil { // pending on all three
		t.Fatal(err)
	}
	if _, err := s.Release(Selector{IDs: []string{id}}); err != nil { // and cancelled again
		t.Fatal(err)
	}
	s.Update(id, func(m *Message, tx *Tx) error { m.Recipients[2].HoldPending = true; return nil })
	s.Close() // the "crash": attempts in flight never record an outcome

	s = openTest(t, dir, func(o *Options) { o.Now = clock.now })
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []State{StateDeferred, StateDeferred, StateHold} {
		r := m.Recipients[i]
		if r.State != want || !r.NextAttempt.Equal(retryAt) {
			t.Errorf("recipient %d: %s at %v, want %s at %v", i, r.State, r.NextAttempt, want, retryAt)
		}
	}
	if at, ok := mustNextDue(t, s); !ok || !at.Equal(retryAt) {
		t.Fatalf("NextDue = %v %v; the recovered recipients must be indexed at their retry time", at, ok)
	}
}

func TestRecover_SpoolSweep(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	kept := put(t, s, body("k", 1000), "a@example.org")
	s.Close()
	spool := filepath.Join(dir, spoolName)
	orphan := encodeID(12345) // a body renamed into place by a commit that never happened
	for _, name := range []string{orphan, "tmp-123", "README"} {
		if err := os.WriteFile(filepath.Join(spool, name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openTest(t, dir)
	if got, want := spoolFiles(t, dir), []string{kept, "README"}; !slices.Equal(got, want) {
		t.Fatalf("spool = %v, want %v", got, want)
	}
	checkBody(t, s, kept, body("k", 1000))
}

// Recovery reads the active index, never every record: a damaged record that no attempt was in flight for is
// not found by a start (that would be the full read that made a 100,000-message restart slow), while the
// interrupted attempts are recovered.
func TestRecover_ReadsOnlyTheActiveIndex(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	inFlight := put(t, s, body("a", 10), "a@example.org")
	idle := put(t, s, body("b", 10), "b@example.org")
	if err := s.Update(inFlight, func(m *Message, tx *Tx) error {
		m.Recipients[0].State = StateActive
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawDB(t, dir, func(b buckets) {
		v := strings.Replace(string(b.msgs.Get([]byte(idle))), `"queued"`, `"limbo"`, 1)
		b.msgs.Put([]byte(idle), []byte(v))
	})

	s = openTest(t, dir)
	if c := mustCorrupt(t, s); len(c) != 0 {
		t.Fatalf("Open quarantined %v: it read records outside the active index", c)
	}
	if m, err := s.Get(inFlight); err != nil || m.Recipients[0].State != StateDeferred {
		t.Fatalf("interrupted attempt: %+v, %v", m, err)
	}
	// The first read that meets the damaged record moves it: here the scheduler's Due.
	due, err := s.Due(time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].ID != inFlight {
		t.Fatalf("Due = %v, %v", due, err)
	}
	if c := mustCorrupt(t, s); len(c) != 1 || c[0].Key != idle || !strings.Contains(c[0].Reason, "unknown state") {
		t.Fatalf("Corrupt = %v", c)
	}
	checkInvariants(t, s)
}

// A damaged record is quarantined by the first read that meets it, whichever it is, and stays listed with its
// reason; offline (read-only) it is shown but not moved.
func TestQuarantine_FoundByReads(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	good := put(t, s, body("g", 10), "a@example.org")
	garbage := put(t, s, body("x", 10), "a@example.org")
	badState := put(t, s, body("y", 10), "a@example.org")
	lostBody := put(t, s, body("z", 1000), "a@example.org")
	held := put(t, s, body("h", 10), "a@example.org")
	if _, err := s.Hold(Selector{IDs: []string{held}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawDB(t, dir, func(b buckets) {
		b.msgs.Put([]byte(garbage), []byte("{not json"))
		v := strings.Replace(string(b.msgs.Get([]byte(badState))), `"queued"`, `"limbo"`, 1)
		b.msgs.Put([]byte(badState), []byte(v))
		v = strings.Replace(string(b.msgs.Get([]byte(held))), `"hold"`, `"limbo"`, 1)
		b.msgs.Put([]byte(held), []byte(v))
		b.msgs.Put([]byte("not-an-id"), []byte("{}"))
	})
	os.Remove(filepath.Join(dir, spoolName, lostBody))

	// Offline inspection shows the damage it meets, and moves nothing.
	ro := openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	var found []string
	if _, err := ro.Scan(Filter{}, func(it Item) error {
		if it.Corrupt != nil {
			found = append(found, it.Corrupt.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 4 {
		t.Fatalf("read-only Scan found %v, want the 4 undecodable records", found)
	}
	if l := mustList(t, ro); len(l) != 2 {
		t.Fatalf("read-only List = %d messages, want 2 decodable", len(l))
	}
	if _, err := ro.Get(garbage); !errors.Is(err, ErrStorage) {
		t.Fatalf("read-only Get of a damaged record: %v", err)
	}
	ro.Close()

	s = openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	if c := mustCorrupt(t, s); len(c) != 0 {
		t.Fatalf("Open quarantined %v", c)
	}
	// Due meets the waiting ones; the held one waits for an admin verb; the body's loss shows at its reading.
	if due := mustDue(t, s, time.Now().Add(time.Hour), 10); len(due) != 2 {
		t.Fatalf("Due = %v, want good and lostBody", due)
	}
	if _, err := s.Release(Selector{All: true}); !errors.Is(err, ErrStorage) {
		t.Fatalf("Release -all over damaged records: %v", err)
	}
	if _, err := s.Body(lostBody); !errors.Is(err, ErrStorage) {
		t.Fatalf("Body without its spool file: %v", err)
	}
	list := mustList(t, s)
	if len(list) != 1 || list[0].ID != good {
		t.Fatalf("List = %v, want only %s", list, good)
	}
	corrupt, err := s.Corrupt()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, c := range corrupt {
		reasons[c.Key] = c.Reason
		if c.At.IsZero() {
			t.Errorf("%s: no quarantine time", c.Key)
		}
	}
	want := map[string]string{
		garbage:     "does not decode",
		badState:    "unknown state",
		held:        "unknown state",
		lostBody:    "spool file missing",
		"not-an-id": "not a queue ID",
	}
	for k, w := range want {
		if !strings.Contains(reasons[k], w) {
			t.Errorf("corrupt[%s] = %q, want it to say %q", k, reasons[k], w)
		}
	}
	if len(corrupt) != len(want) {
		t.Errorf("%d corrupt records, want %d: %v", len(corrupt), len(want), corrupt)
	}
	checkInvariants(t, s)
	if st := mustStats(t, s); st.Corrupt != len(want) || st.Messages != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	s.Close()
	s = openTest(t, dir) // quarantine is stable across restarts
	if c := mustCorrupt(t, s); len(c) != len(want) {
		t.Fatalf("after second open: %d corrupt", len(c))
	}
	checkBody(t, s, good, body("g", 10))
}

// Damage that no crash makes (an index entry lost or stray, an inline body left over) is repaired by the full
// check of a compaction; a stray due entry is also dropped by Due when it reaches it.
func TestRepair_IndexesRebuilt(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := put(t, s, body("a", 10), "a@example.org")
	b := put(t, s, body("b", 10), "b@example.org")
	c := put(t, s, body("c", 10), "c@example.org")
	if err := s.Update(c, func(m *Message, tx *Tx) error { m.Recipients[0].State = StateActive; return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawDB(t, dir, func(bk buckets) {
		var keys [][]byte
		cur := bk.due.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			if strings.HasSuffix(string(k), a) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			bk.due.Delete(k) // a lost its entry
		}
		bk.due.Put(append(make([]byte, 8), "ZZZZ"...), []byte{})         // a stray entry, due first
		bk.due.Put(append(make([]byte, 8), b...), []byte{})              // b indexed at the wrong time as well
		bk.active.Delete([]byte(c))                                      // c lost its active entry
		bk.bodies.Put([]byte(encodeID(7)), []byte("orphan inline body")) // and a body nobody owns
	})
	s = openTest(t, dir)
	due, err := s.Due(time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].ID != b {
		t.Fatalf("Due = %v, %v: want b once, the stray entries dropped", due, err)
	}
	if at, ok := mustNextDue(t, s); !ok || at.IsZero() {
		t.Fatalf("NextDue = %v %v: the stray entries due at time 0 are still there", at, ok)
	}
	s.Close()
	if _, err := Compact(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	checkInvariants(t, s)
	if m := mustGet(t, s, c); m.Recipients[0].State != StateDeferred {
		t.Fatalf("c = %+v: the repaired active entry must be recovered", m.Recipients[0])
	}
	due, err = s.Due(time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 3 || due[0].ID != a {
		t.Fatalf("Due after repair = %v, %v", due, err)
	}
}
