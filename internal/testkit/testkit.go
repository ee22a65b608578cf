// Package testkit holds the small helpers that tests of every package share: a bounded poll for a condition,
// a buffer that goroutines write while the test reads it, a serve-until-cancelled function run for the length
// of a test, and the rule that turns a missing prerequisite into a skip or, under PTRELAY_E2E=1, a failure.
//
// It imports nothing of ptrelay, so the tests of queue and dnscheck (which know nothing of relay) use it as
// freely as relay's. Helpers that launch peers live beside the code they serve: relay/relaytest (mail peers,
// the daemon) and dnscheck/dnstest (DNS servers); both use this package.
package testkit

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// E2EEnv is the environment variable that turns a missing prerequisite from a skip into a failure. CI sets it
// (scripts/test), so that the end-to-end suite cannot silently vanish.
const E2EEnv = "PTRELAY_E2E"

// E2E reports whether missing prerequisites must fail the test: PTRELAY_E2E is set to anything but "0".
func E2E() bool {
	v := os.Getenv(E2EEnv)
	return v != "" && v != "0"
}

// Missing ends the test because a prerequisite is missing (a program, root, an IPv6 loopback...): it skips
// with why, or fails with why under PTRELAY_E2E=1. why says what is missing and how to get it.
func Missing(t testing.TB, why string) {
	t.Helper()
	if E2E() {
		t.Fatal(why + "; " + E2EEnv + " is set, so this is a failure")
	}
	t.Skip(why + "; set " + E2EEnv + "=1 to make this a failure")
}

// RequireRoot ends the test through Missing unless it runs as root; why says what needs root ("it starts a
// private Postfix instance").
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "end-to-end test needs root ("+why+")")
	}
}

// SeedEnv replays a randomised test: set it to the seed a run logged.
const SeedEnv = "PTRELAY_TEST_SEED"

// Seed returns the seed of a randomised test's random source: $PTRELAY_TEST_SEED when set (a replay),
// otherwise a new one. It is logged, so a failing run says how to replay it.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(SeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: not a seed (an unsigned decimal number)", SeedEnv, v)
		}
		seed = n
	}
	t.Logf("random seed %d; replay with %s=%d go test -run '^%s$'", seed, SeedEnv, seed, t.Name())
	return seed
}

// PollInterval is how often WaitFor evaluates its condition.
const PollInterval = 20 * time.Millisecond

// Eventually evaluates cond every PollInterval until it holds (true) or timeout has passed (false). The bound
// is for a broken system: a passing test never waits that long, and no test asserts on how long it took.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(PollInterval)
	}
	return true
}

// WaitFor waits until cond holds, failing the test after timeout with "timed out ... waiting for what".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// WaitForExplained is WaitFor with the failure message built when the wait fails (the state the condition saw,
// a log tail).
func WaitForExplained(t testing.TB, timeout time.Duration, explain func() string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("after %v: %s", timeout, explain())
	}
}

// Buffer is a bytes.Buffer that other goroutines (a process's output, a logger) write while the test reads it.
type Buffer struct {
	// OnLine, when set before the first Write, sees every complete line (split at \n or \r; empty lines
	// skipped) as it arrives, under the buffer's lock.
	OnLine func(line string)

	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.OnLine != nil {
		b.partial = append(b.partial, p...)
		for {
			i := bytes.IndexAny(b.partial, "\r\n")
			if i < 0 {
				break
			}
			if i > 0 {
				b.OnLine(string(b.partial[:i]))
			}
			b.partial = b.partial[i+1:]
		}
	}
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StopTimeout bounds how long Serve's stop waits for the function to return after its context ended.
const StopTimeout = time.Minute

// Serve runs serve(ctx) in a goroutine until the test ends. At cleanup, or when the test calls the returned
// stop (a no-op after the first call), ctx is cancelled and Serve waits for serve to return: a non-nil error
// or no return within StopTimeout fails the test, naming what. Cleanups the test registered before calling
// Serve run after serve has returned.
func Serve(t testing.TB, what string, serve func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s returned %v on a clean stop", what, err)
				}
			case <-time.After(StopTimeout):
				t.Errorf("%s did not return within %v after its context ended", what, StopTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
