package queue

import (
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

func TestRecover_Quarantine(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	good := put(t, s, body("g", 10), "a@example.org")
	garbage := put(t, s, body("x", 10), "a@example.org")
	badState := put(t, s, body("y", 10), "a@example.org")
	lostBody := put(t, s, body("z", 1000), "a@example.org")
	s.Close()
	rawDB(t, dir, func(b buckets) {
		b.msgs.Put([]byte(garbage), []byte("{not json"))
		v := strings.Replace(string(b.msgs.Get([]byte(badState))), `"queued"`, `"limbo"`, 1)
		b.msgs.Put([]byte(badState), []byte(v))
		b.msgs.Put([]byte("not-an-id"), []byte("{}"))
	})
	os.Remove(filepath.Join(dir, spoolName, lostBody))

	// Offline inspection sees the damage before it is moved.
	ro := openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	if c, err := ro.Corrupt(); err != nil || len(c) != 3 {
		t.Fatalf("read-only Corrupt = %v, %v", c, err)
	}
	if l := mustList(t, ro); len(l) != 2 {
		t.Fatalf("read-only List = %d messages, want 2 decodable", len(l))
	}
	ro.Close()

	s = openTest(t, dir) // must not fail
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
	if st := mustStats(t, s); st.Corrupt != len(want) || st.Messages != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if due := mustDue(t, s, time.Now().Add(time.Hour), 10); len(due) != 1 || due[0].ID != good {
		t.Fatalf("Due = %v: quarantined records must leave the due index", due)
	}
	s.Close()
	s = openTest(t, dir) // quarantine is stable across restarts
	if c := mustCorrupt(t, s); len(c) != len(want) {
		t.Fatalf("after second open: %d corrupt", len(c))
	}
}

func TestRecover_DueIndexRebuilt(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := put(t, s, body("a", 10), "a@example.org")
	b := put(t, s, body("b", 10), "b@example.org")
	s.Close()
	rawDB(t, dir, func(bk buckets) {
		var keys [][]byte
		c := bk.due.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if strings.HasSuffix(string(k), a) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			bk.due.Delete(k) // a lost its entry
		}
		bk.due.Put(append(make([]byte, 8), "ZZZZ"...), []byte{}) // a stray entry
		bk.bodies.Put([]byte(encodeID(7)), []byte("orphan inline body"))
	})
	s = openTest(t, dir)
	due, err := s.Due(time.Now().Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ID != a || due[1].ID != b {
		t.Fatalf("Due after rebuild = %v", due)
	}
	s.Close()
	rawDB(t, dir, func(bk buckets) {
		if bk.due.Stats().KeyN != 2 || bk.bodies.Get([]byte(encodeID(7))) != nil {
			t.Errorf("due has %d keys, orphan body present: %v", bk.due.Stats().KeyN, bk.bodies.Get([]byte(encodeID(7))) != nil)
		}
	})
}
