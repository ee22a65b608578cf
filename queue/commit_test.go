package queue

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"ptrelay/internal/testkit"
)

// TestCommit_Concurrent: 50 goroutines commit at once (group commit gathers them); every message is there with
// its body after a reopen.
func TestCommit_Concurrent(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 4096 })
	const writers, each = 50, 4
	var mu sync.Mutex
	bodies := map[string][]byte{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seed := fmt.Sprintf("g%d-%d", g, i)
				b := body(seed, 1000+(g*each+i)*97%20000) // both inline and spooled
				w, err := s.NewWriter()
				if err == nil {
					_, err = w.Write(b)
				}
				var id string
				if err == nil {
					id, err = w.Commit(Envelope{From: seed + "@example.test"}, rcpts("r@example.org"))
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				bodies[id] = b
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(bodies) != writers*each {
		t.Fatalf("%d distinct IDs, want %d", len(bodies), writers*each)
	}
	s.Close()
	s = openTest(t, dir)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != writers*each {
		t.Fatalf("after reopen: %d messages, want %d", len(list), writers*each)
	}
	for id, b := range bodies {
		checkBody(t, s, id, b)
	}
	due, err := s.Due(time.Now(), 1000)
	if err != nil || len(due) != writers*each {
		t.Fatalf("Due: %d, %v", len(due), err)
	}
}

// holdLoop occupies the commit loop until the returned function is called, so the requests submitted meanwhile
// are gathered into one batch.
func holdLoop(t *testing.T, s *Store) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	started := make(chan struct{})
	go s.submit(&request{fn: func(*bolt.Tx) error {
		close(started)
		<-gate
		return nil
	}})
	<-started
	return func() { close(gate) }
}

// waitQueued waits (bounded) until n requests wait for the commit loop.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	if !testkit.Eventually(5*time.Second, func() bool { return len(s.reqs) >= n }) {
		t.Fatalf("only %d requests queued, want %d", len(s.reqs), n)
	}
}

// TestCommit_RetriedBatchIsIdempotent: one member of a batch fails, the others are re-run; their effects (an
// attempt counted, a DSN enqueued) must appear exactly once, and the failing member gets its own error.
func TestCommit_RetriedBatchIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	a := put(t, s, body("a", 10), "a@example.org")
	c := put(t, s, body("c", 10), "c@example.org")

	release := holdLoop(t, s)
	var runsA, runsC atomic.Int32
	errFail := errors.New("member B fails")
	results := make(chan error, 3)
	go func() {
		results <- s.Update(a, func(m *Message, tx *Tx) error {
			runsA.Add(1)
			m.Recipients[0].Attempts++
			m.Recipients[0].History = append(m.Recipients[0].History, Attempt{Code: 451, Outcome: "deferred"})
			// A large DSN body goes to a spool file: the discarded run's file must not survive.
			_, err := tx.Enqueue(Envelope{IsDSN: true}, rcpts("sender@example.test"), body("dsn", 500))
			return err
		})
	}()
	waitQueued(t, s, 1)
	go func() {
		results <- s.Update(c, func(m *Message, tx *Tx) error { return errFail })
	}()
	waitQueued(t, s, 2)
	go func() {
		results <- s.Update(c, func(m *Message, tx *Tx) error {
			runsC.Add(1)
			m.Recipients[0].Attempts++
			return nil
		})
	}()
	waitQueued(t, s, 3)
	release()
	var gotFail, gotOK int
	for range 3 {
		select {
		case err := <-results:
			switch {
			case errors.Is(err, errFail):
				gotFail++
			case err == nil:
				gotOK++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("updates did not finish")
		}
	}
	if gotFail != 1 || gotOK != 2 {
		t.Fatalf("results: %d failed, %d ok", gotFail, gotOK)
	}
	if runsA.Load() != 2 {
		t.Fatalf("A ran %d times; the test needs the batch to be retried (2 runs)", runsA.Load())
	}
	ma := mustGet(t, s, a)
	mc := mustGet(t, s, c)
	if ma.Recipients[0].Attempts != 1 || len(ma.Recipients[0].History) != 1 || mc.Recipients[0].Attempts != 1 {
		t.Fatalf("effects not applied exactly once: A %+v, C %+v", ma.Recipients[0], mc.Recipients[0])
	}
	list := mustList(t, s)
	var dsns []string
	for _, m := range list {
		if m.Envelope.IsDSN {
			dsns = append(dsns, m.ID)
		}
	}
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs enqueued, want 1", len(dsns))
	}
	checkBody(t, s, dsns[0], body("dsn", 500))
	if files := spoolFiles(t, dir); len(files) != 1 || files[0] != dsns[0] {
		t.Fatalf("spool = %v, want only the committed DSN %s", files, dsns[0])
	}
}

// TestCommit_FailedCommit: when the transaction itself cannot commit, every member gets ErrStorage and a
// spooled body is removed.
func TestCommit_FailedCommit(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, func(o *Options) { o.InlineMax = 100 })
	w, _ := s.NewWriter()
	w.Write(body("x", 5000))
	s.db.Close() // the database goes away under the running commit loop
	if _, err := w.Commit(Envelope{}, rcpts("a@example.org")); !errors.Is(err, ErrStorage) {
		t.Fatalf("Commit err = %v, want ErrStorage", err)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
}

// TestCommit_PanicInUpdate: a panicking update function fails alone; the loop keeps serving.
func TestCommit_PanicInUpdate(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := put(t, s, body("x", 10), "a@example.org")
	err := s.Update(id, func(m *Message, tx *Tx) error { panic("boom") })
	if err == nil {
		t.Fatal("panic not reported")
	}
	put(t, s, body("y", 10), "b@example.org")
}
