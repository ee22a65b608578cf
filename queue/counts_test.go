package queue

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The stored counts, the due index and the active index are kept by write as the records change. This test
// drives a queue through random sequences of everything that changes it (commits, DSNs added in an Update,
// claims and every attempt outcome, the admin verbs one by one and -all, crashes, clean restarts, damaged
// records and lost spool files found by reads) and after every step compares them with a scan of the records
// (checkInvariants).

type world struct {
	t     *testing.T
	rng   *rand.Rand
	dir   string
	s     *Store
	clock *fakeClock
	ids   []string // every ID ever made, some long gone
	log   []string // the steps so far, printed on failure
}

func (w *world) open() {
	s, err := Open(Options{Dir: w.dir, InlineMax: 100, Now: w.clock.now})
	if err != nil {
		w.t.Fatalf("open: %v\nsteps:\n%v", err, w.log)
	}
	w.s = s
}

func (w *world) pick() string {
	if len(w.ids) == 0 || w.rng.IntN(10) == 0 {
		return encodeID(uint64(w.rng.IntN(1 << 20))) // an ID that names nothing
	}
	return w.ids[w.rng.IntN(len(w.ids))]
}

// live is a random message that exists now, or "".
func (w *world) live() string {
	for range 20 {
		id := w.pick()
		if _, err := w.s.Get(id); err == nil {
			return id
		}
	}
	return ""
}

func (w *world) commit() {
	n := 1 + w.rng.IntN(3)
	var to []string
	for i := range n {
		to = append(to, fmt.Sprintf("r%d@d%d.example", i, w.rng.IntN(3)))
	}
	size := 10
	if w.rng.IntN(3) == 0 {
		size = 300 // spooled
	}
	ws, err := w.s.NewWriter()
	if err != nil {
		w.t.Fatal(err)
	}
	ws.Write(body("p", size))
	id, err := ws.Commit(Envelope{From: "s@example.test"}, rcpts(to...))
	if err != nil {
		w.t.Fatal(err)
	}
	w.ids = append(w.ids, id)
}

// update applies fn to a live message; errors from illegal changes are fine (they change nothing).
func (w *world) update(fn func(m *Message, tx *Tx) error) {
	id := w.live()
	if id == "" {
		return
	}
	err := w.s.Update(id, fn)
	if err != nil && !errors.Is(err, ErrIllegalTransition) && !errors.Is(err, ErrNotFound) {
		w.t.Fatalf("Update: %v", err)
	}
}

func (w *world) claim() {
	now := w.clock.now()
	w.update(func(m *Message, tx *Tx) error {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if (r.State == StateQueued || r.State == StateDeferred) && w.rng.IntN(4) != 0 {
				r.State, r.Attempts = StateActive, r.Attempts+1
				r.NextAttempt = now.Add(time.Duration(1+w.rng.IntN(30)) * time.Minute)
			}
		}
		return nil
	})
}

func (w *world) outcome() {
	now := w.clock.now()
	w.update(func(m *Message, tx *Tx) error {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State != StateActive {
				continue
			}
			r.State = []State{StateDelivered, StateDeferred, StateBounced, StateQueued}[w.rng.IntN(4)]
			r.History = append(r.History, Attempt{At: now, Code: 451, Outcome: string(r.State)})
			if r.State == StateBounced && w.rng.IntN(2) == 0 {
				id, err := tx.Enqueue(Envelope{IsDSN: true}, rcpts("s@example.test"), body("dsn", 50+w.rng.IntN(100)))
				if err != nil {
					return err
				}
				w.ids = append(w.ids, id)
			}
		}
		return nil
	})
}

func (w *world) expire() {
	w.update(func(m *Message, tx *Tx) error {
		for i := range m.Recipients {
			if r := &m.Recipients[i]; r.State == StateQueued || r.State == StateDeferred {
				r.State = StateBounced
			}
		}
		return nil
	})
}

func (w *world) verb() {
	sel := Selector{IDs: []string{w.pick()}}
	if w.rng.IntN(2) == 0 {
		sel.IDs = append(sel.IDs, w.pick())
	}
	if w.rng.IntN(10) == 0 {
		sel = Selector{All: true}
	}
	verbs := []func(Selector) (int, error){w.s.Hold, w.s.Release, w.s.Retry, w.s.Bounce, w.s.Delete}
	if _, err := verbs[w.rng.IntN(len(verbs))](sel); err != nil && !errors.Is(err, ErrNotFound) {
		w.t.Fatalf("verb: %v", err)
	}
}

// crash copies the database and the spool as they are on disk now (every call above has committed and fsync'd)
// to a new directory and opens that: what a kill -9 after the last commit leaves.
func (w *world) crash() {
	dst := w.t.TempDir()
	copyTree(w.t, w.dir, dst)
	w.s.Close()
	w.dir = dst
	w.open()
	w.noActive()
}

func (w *world) restart() {
	w.s.Close()
	w.open()
	w.noActive()
}

// noActive checks that recovery left no recipient active: no attempt is in flight after a start.
func (w *world) noActive() {
	list, err := w.s.List()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, m := range list {
		for _, r := range m.Recipients {
			if r.State == StateActive {
				w.t.Fatalf("%s: recipient %s still active after a start", m.ID, r.Addr)
			}
		}
	}
}

// damage writes garbage over a live record behind write's back, then lets a read find it.
func (w *world) damage() {
	id := w.live()
	if id == "" {
		return
	}
	if err := w.s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsgs).Put([]byte(id), []byte(`{"id":"`+id+`","recipients":[{"state":"limbo"}]}`))
	}); err != nil {
		w.t.Fatal(err)
	}
	switch w.rng.IntN(4) {
	case 0:
		w.s.Get(id)
	case 1:
		w.s.Hold(Selector{IDs: []string{id}})
	case 2:
		w.s.Update(id, func(m *Message, tx *Tx) error { return nil })
	case 3:
		w.s.Retry(Selector{All: true})
	}
	if _, err := w.s.Get(id); !errors.Is(err, ErrNotFound) { // whichever read it was, it is quarantined now
		w.t.Fatalf("damaged record %s still live after a read: %v", id, err)
	}
}

// loseBody removes a spooled message's file; reading the body quarantines the message.
func (w *world) loseBody() {
	id := w.live()
	if id == "" {
		return
	}
	if err := os.Remove(filepath.Join(w.dir, spoolName, id)); err != nil {
		return // inline
	}
	if rc, err := w.s.Body(id); err == nil {
		rc.Close()
		w.t.Fatalf("Body of %s without its spool file: no error", id)
	}
}

func TestCounts_RandomOperations(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	steps := 120
	if testing.Short() {
		seeds, steps = seeds[:1], 40
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			w := &world{t: t, rng: rand.New(rand.NewPCG(seed, 0)), dir: t.TempDir(), clock: &fakeClock{t: t0}}
			w.open()
			defer func() { w.s.Close() }()
			ops := []struct {
				name   string
				weight int
				do     func()
			}{
				{"commit", 8, w.commit},
				{"claim", 6, w.claim},
				{"outcome", 6, w.outcome},
				{"expire", 1, w.expire},
				{"verb", 5, w.verb},
				{"due", 2, func() { w.s.Due(w.clock.now(), 1+w.rng.IntN(5)) }},
				{"clock", 2, func() { w.clock.t = w.clock.t.Add(time.Duration(w.rng.IntN(40)) * time.Minute) }},
				{"crash", 1, w.crash},
				{"restart", 1, w.restart},
				{"damage", 1, w.damage},
				{"lose body", 1, w.loseBody},
			}
			total := 0
			for _, op := range ops {
				total += op.weight
			}
			for step := range steps {
				n := w.rng.IntN(total)
				for _, op := range ops {
					if n -= op.weight; n < 0 {
						w.log = append(w.log, op.name)
						op.do()
						break
					}
				}
				if t.Failed() {
					t.Fatalf("seed %d step %d: steps %v", seed, step, w.log)
				}
				checkInvariants(t, w.s)
			}
			st, _ := w.s.Stats()
			t.Logf("seed %d: %v; %d messages, %d quarantined", seed, st.ByState, st.Messages, st.Corrupt)
		})
	}
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
