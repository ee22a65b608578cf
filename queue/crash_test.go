package queue

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

// The crash test runs this test binary again as a child (TestCrashChild with crashEnv set) that commits messages
// from several goroutines and prints "ID seed size" after each Commit returns. The parent SIGKILLs it at a random
// moment, reopens the queue and checks that every printed ID is there with its whole body, and that no message
// exists whose body is not whole.

const (
	crashEnv     = "PTRELAY_QUEUE_CRASH_DIR"
	crashSeedEnv = "PTRELAY_QUEUE_CRASH_SEED" // the child's random seed, from the parent's (testkit.Seed)
)

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	seed, err := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child seed:", err)
		os.Exit(2)
	}
	s, err := Open(Options{Dir: dir, InlineMax: 16 << 10, OpenTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		os.Stdout.WriteString(fmt.Sprintf(format, args...))
		out.Unlock()
	}
	// A deliverer claims due messages (active, next attempt recorded first) and finishes some of them, so
	// kills also land in the middle of updates and removals.
	go func() {
		rng := rand.New(rand.NewPCG(seed, 100)) // one source per goroutine: a rand.Rand is not safe for sharing
		for {
			due, err := s.Due(time.Now(), 4)
			if err != nil {
				return
			}
			for _, m := range due {
				err := s.Update(m.ID, func(m *Message, tx *Tx) error {
					for i := range m.Recipients {
						m.Recipients[i].State = StateActive
						m.Recipients[i].Attempts++
						m.Recipients[i].NextAttempt = time.Now().Add(time.Hour)
					}
					return nil
				})
				if err != nil {
					return
				}
				say("CLAIM %s\n", m.ID)
				if rng.IntN(2) == 0 {
					continue // left active: the crash must turn it into deferred
				}
				err = s.Update(m.ID, func(m *Message, tx *Tx) error {
					for i := range m.Recipients {
						m.Recipients[i].State = StateDelivered
					}
					return nil
				})
				if err != nil {
					return
				}
				say("GONE %s\n", m.ID)
			}
			if len(due) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; ; i++ {
				seed := fmt.Sprintf("p%d-g%d-%d", os.Getpid(), g, i)
				size := 100 + rng.IntN(64<<10)
				w, err := s.NewWriter()
				if err != nil {
					return
				}
				b := body(seed, size)
				for len(b) > 0 { // in pieces, as a client sends
					n := min(len(b), 8192)
					if _, err := w.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
				id, err := w.Commit(Envelope{From: seed + "@example.test"}, rcpts("r@example.org"))
				if err != nil {
					return
				}
				say("%s %s %d\n", id, seed, size)
			}
		}()
	}
	wg.Wait()
	os.Exit(3)
}

type acked struct {
	seed string
	size int
}

// crashLog is what the child said before it died.
type crashLog struct {
	acked   map[string]acked
	claimed map[string]bool // may be gone or deferred
	gone    map[string]bool // must be gone
}

// line records one whole line of the child's output and reports whether it was an acknowledgement.
func (l *crashLog) line(s string) bool {
	f := strings.Fields(s)
	switch {
	case len(f) == 2 && f[0] == "CLAIM" && ValidID(f[1]):
		l.claimed[f[1]] = true
	case len(f) == 2 && f[0] == "GONE" && ValidID(f[1]):
		l.gone[f[1]] = true
	default:
		if a, id, ok := parseAck(s); ok {
			l.acked[id] = a
			return true
		}
	}
	return false
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	all := &crashLog{acked: map[string]acked{}, claimed: map[string]bool{}, gone: map[string]bool{}}
	// The kill moments and the children's choices come from one seed, logged for a replay. (The goroutines'
	// interleaving is the scheduler's: a replay repeats the choices, not necessarily the crash.)
	rng := rand.New(rand.NewPCG(testkit.Seed(t), 0))
	const rounds = 4
	for round := range rounds {
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, rng.Uint64()))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill after a random number of acknowledged messages (and a random extra moment), so the kill lands
		// in every phase of a commit: writing, fsync, rename, transaction.
		killAfter := 3 + rng.IntN(30)
		got := 0
		deadline := time.After(20 * time.Second)
	wait:
		for got < killAfter {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				if all.line(l) {
					got++
				}
			case <-deadline:
				break wait
			}
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines { // lines printed before the kill count too
			if all.line(l) {
				got++
			}
		}
		cmd.Wait()
		if got == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		checkCrashState(t, dir, all)
		t.Logf("round %d: %d acknowledged before SIGKILL; in total %d acknowledged, %d claimed, %d finished",
			round, got, len(all.acked), len(all.claimed), len(all.gone))
	}
}

// parseAck reads a whole "ID seed size" line; a line cut by the kill does not parse.
func parseAck(l string) (acked, string, bool) {
	f := strings.Fields(l)
	if len(f) != 3 || !ValidID(f[0]) {
		return acked{}, "", false
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return acked{}, "", false
	}
	return acked{seed: f[1], size: n}, f[0], true
}

func checkCrashState(t *testing.T, dir string, all *crashLog) {
	t.Helper()
	s, err := Open(Options{Dir: dir, InlineMax: 16 << 10})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	spooled := map[string]bool{}
	waiting := 0
	for _, m := range list {
		present[m.ID] = true
		// Every message, acknowledged or not, must be whole: its body is the one its sender wrote.
		seed := strings.TrimSuffix(m.Envelope.From, "@example.test")
		checkBody(t, s, m.ID, body(seed, int(m.Size)))
		if a, ok := all.acked[m.ID]; ok && (a.seed != seed || a.size != int(m.Size)) {
			t.Fatalf("%s: stored %s/%d, acknowledged %s/%d", m.ID, seed, m.Size, a.seed, a.size)
		}
		if m.Size > 16<<10 {
			spooled[m.ID] = true
		}
		if all.gone[m.ID] {
			t.Fatalf("%s: finished (all delivered) before the kill, but still queued", m.ID)
		}
		for _, r := range m.Recipients {
			switch {
			case r.State == StateActive:
				t.Fatalf("%s: still active after recovery", m.ID)
			case r.State == StateDeferred && r.Attempts == 0:
				t.Fatalf("%s: deferred without an attempt", m.ID)
			}
		}
		if _, ok := dueAt(m); ok {
			waiting++
		}
	}
	for id := range all.acked {
		if !present[id] && !all.claimed[id] {
			t.Fatalf("acknowledged message %s lost", id)
		}
	}
	if due := mustDue(t, s, time.Now().Add(48*time.Hour), 1<<20); len(due) != waiting {
		t.Fatalf("due index has %d messages, %d are waiting", len(due), waiting)
	}
	if c := mustCorrupt(t, s); len(c) != 0 {
		t.Fatalf("corrupt records after a crash: %v", c)
	}
	checkInvariants(t, s) // the counts and the indexes, recovered through the active index only
	for _, f := range spoolFiles(t, dir) {
		if !spooled[f] {
			t.Fatalf("spool file %s left after recovery", f)
		}
	}
	if len(spoolFiles(t, dir)) != len(spooled) {
		t.Fatalf("%d spool files for %d spooled messages", len(spoolFiles(t, dir)), len(spooled))
	}
}
