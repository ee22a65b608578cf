package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingTB stands in for a test whose failures and cleanups Serve and WaitFor produce.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestServe_StopsAtCleanupAndReportsTheError(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		wantErr string
	}{
		{"clean", nil, ""},
		{"error", errors.New("listener broke"), "the server returned listener broke on a clean stop"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			var started, returned atomic.Bool
			Serve(rec, "the server", func(ctx context.Context) error {
				started.Store(true)
				<-ctx.Done()
				returned.Store(true)
				return c.err
			})
			WaitFor(t, 10*time.Second, "the serve function to start", started.Load)
			if returned.Load() {
				t.Fatal("serve returned before the test ended")
			}
			rec.runCleanups()
			if !returned.Load() {
				t.Fatal("cleanup did not wait for serve to return")
			}
			if got := strings.Join(rec.errors, "\n"); got != c.wantErr {
				t.Errorf("errors %q, want %q", got, c.wantErr)
			}
		})
	}
}

func TestServe_StopIsIdempotent(t *testing.T) {
	rec := &recordingTB{TB: t}
	var returns atomic.Int32
	stop := Serve(rec, "x", func(ctx context.Context) error {
		<-ctx.Done()
		returns.Add(1)
		return nil
	})
	stop()
	if returns.Load() != 1 {
		t.Fatal("stop did not wait for serve")
	}
	stop()
	rec.runCleanups()
	if len(rec.errors) != 0 {
		t.Errorf("errors: %q", rec.errors)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	if !Eventually(10*time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Eventually stopped at call %d", n)
	}
	if Eventually(3*PollInterval, func() bool { return false }) {
		t.Error("Eventually reported a condition that never held")
	}
}

func TestBuffer_Lines(t *testing.T) {
	var lines []string
	b := &Buffer{OnLine: func(l string) { lines = append(lines, l) }}
	for _, p := range []string{"one\r", "\ntw", "o\n", "\nthree"} {
		if n, err := b.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if got := strings.Join(lines, "|"); got != "one|two" {
		t.Errorf("lines %q, want one|two (three is not complete)", got)
	}
	if b.String() != "one\r\ntwo\n\nthree" {
		t.Errorf("String() = %q", b.String())
	}
}

func TestBuffer_ConcurrentWriters(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if len(b.String()) != 400 {
		t.Errorf("%d bytes, want 400", len(b.String()))
	}
}

// The skip path and the failure path of Missing, each in a child test process with its own environment.
func TestMissing_SkipsOrFailsByE2E(t *testing.T) {
	for _, c := range []struct {
		env      string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestMissingHelper"},
		{"0", false, "--- SKIP: TestMissingHelper"},
		{"1", true, "--- FAIL: TestMissingHelper"},
		{"yes", true, "--- FAIL: TestMissingHelper"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingHelper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), E2EEnv+"="+c.env, "TESTKIT_HELPER=1")
		out, err := cmd.CombinedOutput()
		if (err != nil) != c.wantFail || !strings.Contains(string(out), c.want) ||
			!strings.Contains(string(out), "test needs frobnicator (apt-get install frob)") {
			t.Errorf("%s=%q: err %v, want failure %v and %q:\n%s", E2EEnv, c.env, err, c.wantFail, c.want, out)
		}
	}
}

func TestMissingHelper(t *testing.T) {
	if os.Getenv("TESTKIT_HELPER") == "" {
		t.Skip("run by TestMissing_SkipsOrFailsByE2E")
	}
	Missing(t, "test needs frobnicator (apt-get install frob)")
	t.Error("Missing returned")
}

func TestSeed_FromEnvironment(t *testing.T) {
	t.Setenv(SeedEnv, "42")
	if s := Seed(t); s != 42 {
		t.Errorf("Seed = %d with %s=42", s, SeedEnv)
	}
}
