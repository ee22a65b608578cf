package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, dir string, mod ...func(*Options)) *Store {
	t.Helper()
	opts := Options{Dir: dir}
	for _, m := range mod {
		m(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rcpts(addrs ...string) []Recipient {
	var rs []Recipient
	for _, a := range addrs {
		rs = append(rs, Recipient{Addr: a, State: StateQueued})
	}
	return rs
}

// body makes a deterministic body of n bytes, different per seed, so a test can check every byte.
func body(seed string, n int) []byte {
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = append(b, seed...)
		b = append(b, " line "...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "\r\n"...)
	}
	return b[:n]
}

func put(t *testing.T, s *Store, b []byte, to ...string) string {
	t.Helper()
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	id, err := w.Commit(Envelope{From: "sender@example.test"}, rcpts(to...))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return id
}

func readBody(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	rc, err := s.Body(id)
	if err != nil {
		t.Fatalf("Body(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkBody(t *testing.T, s *Store, id string, want []byte) {
	t.Helper()
	if got := readBody(t, s, id); !bytes.Equal(got, want) {
		t.Fatalf("body of %s: %d bytes, want %d (equal=%v)", id, len(got), len(want), bytes.Equal(got, want))
	}
}

// spoolFiles lists the spool directory.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, spoolName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// waitNotify waits (bounded) for a Notify signal.
func waitNotify(t *testing.T, s *Store) {
	t.Helper()
	select {
	case <-s.Notify():
	case <-time.After(5 * time.Second):
		t.Fatal("no Notify signal")
	}
}

// drainNotify empties the Notify channel.
func drainNotify(s *Store) {
	select {
	case <-s.Notify():
	default:
	}
}

func noNotify(t *testing.T, s *Store) {
	t.Helper()
	select {
	case <-s.Notify():
		t.Fatal("unexpected Notify signal")
	default:
	}
}

// fakeClock is an injectable Options.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// The store's read methods, failing the test on an error: an "it is empty" check must not pass because the
// read failed.

func mustList(t *testing.T, s *Store) []*Message {
	t.Helper()
	l, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return l
}

func mustGet(t *testing.T, s *Store, id string) *Message {
	t.Helper()
	m, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

func mustDue(t *testing.T, s *Store, now time.Time, max int) []*Message {
	t.Helper()
	due, err := s.Due(now, max)
	if err != nil {
		t.Fatalf("Due: %v", err)
	}
	return due
}

func mustNextDue(t *testing.T, s *Store) (time.Time, bool) {
	t.Helper()
	at, ok, err := s.NextDue()
	if err != nil {
		t.Fatalf("NextDue: %v", err)
	}
	return at, ok
}

func mustStats(t *testing.T, s *Store) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func mustCorrupt(t *testing.T, s *Store) []CorruptRecord {
	t.Helper()
	c, err := s.Corrupt()
	if err != nil {
		t.Fatalf("Corrupt: %v", err)
	}
	return c
}

// checkInvariants recomputes from the records, independently of write, everything the store keeps beside
// them, and compares: the counts that Stats reports, the due index, the active index, and that no inline body
// is left without a record. Every live record must decode (damaged ones must have been quarantined first).
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	type want struct {
		messages int
		byState  map[State]int
		corrupt  int
		first    time.Time
		due      map[string]bool
		active   map[string]bool
	}
	w := want{byState: map[State]int{}, due: map[string]bool{}, active: map[string]bool{}}
	var problems []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := bucketsOf(tx)
		c := b.msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r record
			if err := json.Unmarshal(v, &r); err != nil || r.ID != string(k) || len(r.Recipients) == 0 ||
				slices.ContainsFunc(r.Recipients, func(rc Recipient) bool { return !rc.State.Valid() }) {
				problems = append(problems, fmt.Sprintf("live record %q does not decode", k))
				continue
			}
			if w.messages == 0 {
				w.first = r.Arrival
			}
			w.messages++
			earliest, waiting, active, final := int64(0), false, false, true
			for _, rc := range r.Recipients {
				w.byState[rc.State]++
				final = final && (rc.State == StateDelivered || rc.State == StateBounced)
				active = active || rc.State == StateActive
				if rc.State == StateQueued || rc.State == StateDeferred {
					at := int64(0)
					if !rc.NextAttempt.IsZero() && !rc.BounceNow {
						at = max(rc.NextAttempt.UnixNano(), 0)
					}
					if !waiting || at < earliest {
						earliest, waiting = at, true
					}
				}
			}
			if final {
				problems = append(problems, fmt.Sprintf("finished message %s still stored", r.ID))
			}
			if waiting {
				w.due[fmt.Sprintf("%016x%s", uint64(earliest), r.ID)] = true
			}
			if active {
				w.active[r.ID] = true
			}
			if !r.Spooled && b.bodies.Get(k) == nil && r.Size > 0 {
				problems = append(problems, fmt.Sprintf("inline body of %s missing", r.ID))
			}
		}
		cc := b.corrupt.Cursor()
		for k, _ := cc.First(); k != nil; k, _ = cc.Next() {
			w.corrupt++
		}
		dc := b.due.Cursor()
		for k, _ := dc.First(); k != nil; k, _ = dc.Next() {
			hk := fmt.Sprintf("%016x%s", k[:8], k[8:])
			if !w.due[hk] {
				problems = append(problems, "stray due key "+hk)
			}
			delete(w.due, hk)
		}
		for k := range w.due {
			problems = append(problems, "missing due key "+k)
		}
		ac := b.active.Cursor()
		for k, _ := ac.First(); k != nil; k, _ = ac.Next() {
			if !w.active[string(k)] {
				problems = append(problems, fmt.Sprintf("stray active key %s", k))
			}
			delete(w.active, string(k))
		}
		for k := range w.active {
			problems = append(problems, "missing active key "+k)
		}
		bc := b.bodies.Cursor()
		for k, _ := bc.First(); k != nil; k, _ = bc.Next() {
			if b.msgs.Get(k) == nil && b.corrupt.Get(k) == nil {
				problems = append(problems, fmt.Sprintf("orphan inline body %s", k))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != w.messages || st.Corrupt != w.corrupt || !maps.Equal(st.ByState, w.byState) ||
		!st.OldestArrival.Equal(w.first) {
		problems = append(problems, fmt.Sprintf("Stats = %d messages %v corrupt %d oldest %v; a scan says %d %v %d %v",
			st.Messages, st.ByState, st.Corrupt, st.OldestArrival, w.messages, w.byState, w.corrupt, w.first))
	}
	if len(problems) > 0 {
		t.Fatalf("queue invariants broken:\n  %s", strings.Join(problems, "\n  "))
	}
}
