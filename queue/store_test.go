package queue

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestStore_CommitInlineAndSpool(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 1000 })
	small := body("small", 1000) // exactly InlineMax: inline
	large := body("large", 300_000)
	idSmall := put(t, s, small, "a@example.org")
	idLarge := put(t, s, large, "b@example.org", "c@example.org")
	if idSmall >= idLarge {
		t.Fatalf("IDs not increasing: %s, %s", idSmall, idLarge)
	}
	if got := spoolFiles(t, dir); len(got) != 1 || got[0] != idLarge {
		t.Fatalf("spool = %v, want only %s", got, idLarge)
	}
	checkBody(t, s, idSmall, small)
	checkBody(t, s, idLarge, large)
	m, err := s.Get(idLarge)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(large)) || len(m.Recipients) != 2 || m.Envelope.From != "sender@example.test" ||
		m.Recipients[1].State != StateQueued || m.Recipients[1].NextAttempt.IsZero() {
		t.Fatalf("stored message wrong: %+v", m)
	}

	// Everything survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	checkBody(t, s, idSmall, small)
	checkBody(t, s, idLarge, large)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != idSmall || list[1].ID != idLarge {
		t.Fatalf("List = %v", list)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 2 || st.ByState[StateQueued] != 3 || st.Corrupt != 0 || st.OldestArrival.IsZero() {
		t.Fatalf("Stats = %+v", st)
	}
	if _, err := s.Get("0000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.Body("../queue.db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body with a path: %v", err)
	}
}

func TestStore_CommitRejectsBadRecipients(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = -1 })
	for name, rs := range map[string][]Recipient{
		"none":   nil,
		"active": {{Addr: "a@example.org", State: StateActive}},
	} {
		w, _ := s.NewWriter()
		w.Write(body(name, 100))
		if _, err := w.Commit(Envelope{}, rs); err == nil || errors.Is(err, ErrStorage) {
			t.Fatalf("%s: Commit err = %v, want a plain argument error", name, err)
		}
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
}

func TestStore_AbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 10 })
	w, _ := s.NewWriter()
	w.Write(body("x", 5000))
	if got := spoolFiles(t, dir); len(got) != 1 {
		t.Fatalf("a spilled body should be in a temp file, spool = %v", got)
	}
	w.Abort()
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
	if _, err := w.Commit(Envelope{}, rcpts("a@example.org")); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
}

// TestStore_StorageFailure: every way the disk can refuse ends in an error wrapping ErrStorage, and nothing
// is left behind.
func TestStore_StorageFailure(t *testing.T) {
	t.Run("spool directory unusable while writing", func(t *testing.T) {
		dir := t.TempDir()
		s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
		// The tests run as root, so permissions do not stop a write: put a file where the directory was.
		spool := filepath.Join(dir, spoolName)
		if err := os.Remove(spool); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(spool, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		w, _ := s.NewWriter()
		_, err := w.Write(body("x", 5000))
		if !errors.Is(err, ErrStorage) {
			t.Fatalf("Write err = %v, want ErrStorage", err)
		}
		if _, err := w.Commit(Envelope{}, rcpts("a@example.org")); !errors.Is(err, ErrStorage) {
			t.Fatalf("Commit err = %v, want ErrStorage", err)
		}
		if l := mustList(t, s); len(l) != 0 {
			t.Fatalf("a message was stored: %v", l)
		}
	})
	t.Run("spool directory gone at commit", func(t *testing.T) {
		dir := t.TempDir()
		s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
		w, _ := s.NewWriter()
		if _, err := w.Write(body("x", 5000)); err != nil {
			t.Fatal(err)
		}
		// Replace the spool directory by an empty one: the temp file is gone and the rename at commit fails.
		spool := filepath.Join(dir, spoolName)
		if err := os.RemoveAll(spool); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(spool, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(Envelope{}, rcpts("a@example.org")); !errors.Is(err, ErrStorage) {
			t.Fatalf("Commit err = %v, want ErrStorage", err)
		}
		if got := spoolFiles(t, dir); len(got) != 0 {
			t.Fatalf("left behind: %v", got)
		}
		if l := mustList(t, s); len(l) != 0 {
			t.Fatalf("a message was stored: %v", l)
		}
	})
	t.Run("store closed before commit", func(t *testing.T) {
		dir := t.TempDir()
		s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
		w, _ := s.NewWriter()
		w.Write(body("x", 5000))
		s.Close()
		if _, err := w.Commit(Envelope{}, rcpts("a@example.org")); !errors.Is(err, ErrStorage) {
			t.Fatalf("Commit err = %v, want ErrStorage", err)
		}
		if got := spoolFiles(t, dir); len(got) != 0 {
			t.Fatalf("left behind: %v", got)
		}
		if _, err := s.NewWriter(); !errors.Is(err, ErrStorage) {
			t.Fatalf("NewWriter on a closed store: %v", err)
		}
		if err := s.Update("0000000000001", func(*Message, *Tx) error { return nil }); !errors.Is(err, ErrStorage) {
			t.Fatalf("Update on a closed store: %v", err)
		}
	})
}

func TestStore_LockedAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	id := put(t, s, body("x", 10), "a@example.org")

	// flock is per open file description, so a second open in this process meets the lock like another
	// process would.
	for _, ro := range []bool{false, true} {
		_, err := Open(Options{Dir: dir, ReadOnly: ro, OpenTimeout: 100 * time.Millisecond})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("Open(ReadOnly=%v) while held: %v, want ErrLocked", ro, err)
		}
	}
	s.Close()

	ro := openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	if l, err := ro.List(); err != nil || len(l) != 1 || l[0].ID != id {
		t.Fatalf("read-only List = %v, %v", l, err)
	}
	if due, err := ro.Due(time.Now(), 10); err != nil || len(due) != 1 {
		t.Fatalf("read-only Due = %v, %v", due, err)
	}
	if _, err := ro.NewWriter(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("NewWriter read-only: %v", err)
	}
	if _, err := ro.Retry(Selector{All: true}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Retry read-only: %v", err)
	}
	// Two read-only holders coexist.
	ro2 := openTest(t, dir, func(o *Options) { o.ReadOnly = true; o.OpenTimeout = 100 * time.Millisecond })
	checkBody(t, ro2, id, body("x", 10))

	if _, err := Open(Options{Dir: t.TempDir(), ReadOnly: true}); err == nil {
		t.Fatal("read-only Open of a missing database succeeded")
	}
}

func TestStore_NewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, dbName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	db.Close()
	if _, err := Open(Options{Dir: dir}); err == nil || errors.Is(err, ErrStorage) {
		t.Fatalf("Open of schema 99: %v", err)
	}
}

// syncedFreelist reads bbolt's two meta pages (page size 4096) and reports whether the newer one points at a
// written free-page list, which the next Open reads instead of walking the whole file. Layout of a meta page:
// page header (16 bytes), then magic, version, page size, flags (4 bytes each), root bucket (16), freelist
// page id (8), high water mark (8), transaction id (8).
func syncedFreelist(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2*4096 {
		t.Fatalf("read %s: %v", path, err)
	}
	meta := func(p int) (freelist, txid uint64) {
		m := b[p*4096+16:]
		return binary.LittleEndian.Uint64(m[32:]), binary.LittleEndian.Uint64(m[48:])
	}
	f0, tx0 := meta(0)
	f1, tx1 := meta(1)
	if tx1 > tx0 {
		f0 = f1
	}
	return f0 != ^uint64(0)
}

// A clean Close writes bbolt's free-page list, so the next start reads it rather than walking every page of the
// file (7-8 s cold at 100,000 messages); commits do not write it, so after a crash the walk is still done.
func TestClose_WritesTheFreelist(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, dbName)
	s := openTest(t, dir)
	put(t, s, body("a", 10), "r@example.org")
	if syncedFreelist(t, path) {
		t.Fatal("a commit wrote the free-page list: every commit pays for it")
	}
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	s.Close()
	if !syncedFreelist(t, path) {
		t.Fatal("Close did not write the free-page list")
	}
	if syncedFreelist(t, filepath.Join(crashed, dbName)) {
		t.Fatal("the copy taken before Close has a free-page list")
	}
	for _, d := range []string{dir, crashed} {
		s := openTest(t, d)
		checkInvariants(t, s)
		put(t, s, body("b", 10), "r@example.org")
		if syncedFreelist(t, filepath.Join(d, dbName)) {
			t.Fatal("a commit after a clean start wrote the free-page list")
		}
	}
}
