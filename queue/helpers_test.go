package queue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
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
