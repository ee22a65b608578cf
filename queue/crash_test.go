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
)

// The crash test runs this test binary again as a child (TestCrashChild with crashEnv set) that commits messages
// from several goroutines and prints "ID seed size" after each Commit returns. The parent SIGKILLs it at a random
// moment, reopens the queue and checks that every printed ID is there with its whole body, and that no message
// exists whose body is not whole.

const crashEnv = "PTRELAY_QUEUE_CRASH_DIR"

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	s, err := Open(Options{Dir: dir, InlineMax: 16 << 10, OpenTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				seed := fmt.Sprintf("p%d-g%d-%d", os.Getpid(), g, i)
				size := 100 + rand.IntN(64<<10)
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
				out.Lock()
				os.Stdout.WriteString(fmt.Sprintf("%s %s %d\n", id, seed, size))
				out.Unlock()
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

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]acked{}
	const rounds = 4
	for round := range rounds {
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
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
		killAfter := 3 + rand.IntN(30)
		got := 0
		deadline := time.After(20 * time.Second)
	wait:
		for got < killAfter {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				if a, id, ok := parseAck(l); ok {
					all[id] = a
					got++
				}
			case <-deadline:
				break wait
			}
		}
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines { // lines printed before the kill are acknowledged too
			if a, id, ok := parseAck(l); ok {
				all[id] = a
				got++
			}
		}
		cmd.Wait()
		if got == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		checkCrashState(t, dir, all)
		t.Logf("round %d: %d acknowledged before SIGKILL, %d in total", round, got, len(all))
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

func checkCrashState(t *testing.T, dir string, all map[string]acked) {
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
	for _, m := range list {
		present[m.ID] = true
		// Every message, acknowledged or not, must be whole: its body is the one its sender wrote.
		seed := strings.TrimSuffix(m.Envelope.From, "@example.test")
		checkBody(t, s, m.ID, body(seed, int(m.Size)))
		if a, ok := all[m.ID]; ok && (a.seed != seed || a.size != int(m.Size)) {
			t.Fatalf("%s: stored %s/%d, acknowledged %s/%d", m.ID, seed, m.Size, a.seed, a.size)
		}
		if m.Size > 16<<10 {
			spooled[m.ID] = true
		}
	}
	for id := range all {
		if !present[id] {
			t.Fatalf("acknowledged message %s lost", id)
		}
	}
	if c, _ := s.Corrupt(); len(c) != 0 {
		t.Fatalf("corrupt records after a crash: %v", c)
	}
	for _, f := range spoolFiles(t, dir) {
		if !spooled[f] {
			t.Fatalf("spool file %s left after recovery", f)
		}
	}
	if len(spoolFiles(t, dir)) != len(spooled) {
		t.Fatalf("%d spool files for %d spooled messages", len(spoolFiles(t, dir)), len(spooled))
	}
}
