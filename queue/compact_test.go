package queue

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// After most of a queue drained, the file keeps its size; Compact brings it down to what is live and keeps
// every message (envelope, state, body inline or spooled), the quarantine and the counts.
func TestCompact_ShrinksAndKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, dbName)
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 8 << 10 })
	var ids []string
	for i := range 400 {
		size := 4 << 10
		if i%100 == 0 {
			size = 20 << 10 // spooled
		}
		ids = append(ids, put(t, s, body(ids2seed(i), size), "r@example.org"))
	}
	keep := []string{ids[0], ids[1], ids[200], ids[399]}
	if _, err := s.Hold(Selector{IDs: []string{ids[1]}}); err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, id := range ids {
		if !slices.Contains(keep, id) {
			gone = append(gone, id)
		}
	}
	if n, err := s.Delete(Selector{IDs: gone}); err != nil || n != len(gone) {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	// One quarantined record, whose body must be kept too.
	bad := put(t, s, body("bad", 100), "r@example.org")
	s.Close()
	rawDB(t, dir, func(b buckets) { b.msgs.Put([]byte(bad), []byte("{")) })
	s = openTest(t, dir, func(o *Options) { o.InlineMax = 8 << 10 })
	s.Get(bad)
	before := map[string]*Message{}
	for _, id := range keep {
		before[id], _ = s.Get(id)
	}
	s.Close()
	sizeBefore := fileSize(t, path)

	res, err := Compact(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Before != sizeBefore || res.After != fileSize(t, path) || res.Messages != 4 || res.Quarantined != 1 {
		t.Fatalf("Compact = %+v (file %d -> %d)", res, sizeBefore, fileSize(t, path))
	}
	if res.After*4 > res.Before {
		t.Fatalf("compaction left %d of %d bytes", res.After, res.Before)
	}
	if _, err := os.Stat(path + compactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	if !syncedFreelist(t, path) {
		t.Error("the compacted file has no free-page list: its first start walks it")
	}

	s = openTest(t, dir, func(o *Options) { o.InlineMax = 8 << 10 })
	checkInvariants(t, s)
	for i, id := range keep {
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Recipients[0].State != before[id].Recipients[0].State || !m.Arrival.Equal(before[id].Arrival) {
			t.Errorf("%s: %+v, before compaction %+v", id, m, before[id])
		}
		size := 4 << 10
		if i == 0 || i == 2 {
			size = 20 << 10
		}
		checkBody(t, s, id, body(ids2seed(slices.Index(ids, id)), size))
	}
	if c := mustCorrupt(t, s); len(c) != 1 || c[0].Key != bad {
		t.Fatalf("quarantine after compaction: %v", c)
	}
	var kept []byte
	s.view(func(b buckets) error { kept = append(kept, b.bodies.Get([]byte(bad))...); return nil })
	if string(kept) != string(body("bad", 100)) {
		t.Fatal("the quarantined record's body was not kept")
	}
	// The compacted file takes new mail as usual.
	checkBody(t, s, put(t, s, body("new", 10), "r@example.org"), body("new", 10))
}

func ids2seed(i int) string { return "m" + encodeID(uint64(i)) }

// Compaction needs the database to itself: while another process (or Store) holds it, it fails with ErrLocked
// and changes nothing.
func TestCompact_RefusesWhenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	id := put(t, s, body("a", 10), "r@example.org")
	_, err := Compact(Options{Dir: dir, OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact while open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, dbName+compactSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused compaction left a file: %v", err)
	}
	checkBody(t, s, id, body("a", 10))
}

// There is nothing to compact where there is no queue, and compacting must not make one.
func TestCompact_NoDatabase(t *testing.T) {
	dir := t.TempDir()
	if _, err := Compact(Options{Dir: dir}); err == nil {
		t.Fatal("Compact of an empty directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, dbName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Compact created a database: %v", err)
	}
}

// A compaction that died before its rename leaves queue.db.compact beside the untouched queue.db; the next
// read-write Open removes it.
func TestCompact_InterruptedLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	id := put(t, s, body("a", 10), "r@example.org")
	s.Close()
	tmp := filepath.Join(dir, dbName+compactSuffix)
	if err := os.WriteFile(tmp, []byte("half a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	checkBody(t, s, id, body("a", 10))
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale compaction file kept: %v", err)
	}
}

// A process that waits for the lock while a compaction replaces the file must end up on the new file, not on
// the old one it opened before the rename (it would accept mail into a deleted file).
func TestOpen_FileReplacedWhileWaitingForTheLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, dbName)
	holder := openTest(t, dir)
	old := put(t, holder, body("old", 10), "r@example.org")

	// The replacement: another queue, with a message the old file does not have.
	other := t.TempDir()
	replacement := openTest(t, other)
	fresh := put(t, replacement, body("new", 10), "r@example.org")
	replacement.Close()

	opened := make(chan *Store, 1)
	failed := make(chan error, 1)
	go func() {
		s, err := Open(Options{Dir: dir, OpenTimeout: 10 * time.Second})
		if err != nil {
			failed <- err
			return
		}
		opened <- s
	}()
	// Wait until the waiter has the old file open (it then retries the lock), as a compaction would find it.
	waitFor(t, func() bool { return openedBy(t, path) >= 2 })
	if err := os.Rename(filepath.Join(other, dbName), path); err != nil {
		t.Fatal(err)
	}
	holder.Close()
	select {
	case s := <-opened:
		defer s.Close()
		if _, err := s.Get(fresh); err != nil {
			t.Fatalf("the waiter opened the replaced file: %v", err)
		}
		if _, err := s.Get(old); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old message in the new file: %v", err)
		}
	case err := <-failed:
		t.Fatal(err)
	case <-time.After(15 * time.Second):
		t.Fatal("the waiter never opened the queue")
	}
}

// openedBy counts the file descriptors of this process open on path's file (any inode it had).
func openedBy(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (target == path || target == path+" (deleted)") {
			n++
		}
	}
	return n
}

// waitFor polls cond, bounded.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
