package relaytest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

// process is a peer started by a test: its output is captured, its process group is killed at cleanup.
type process struct {
	cmd  *exec.Cmd
	out  *testkit.Buffer // stdout and stderr interleaved, for failure messages
	done chan struct{}
	err  error // set before done is closed
}

// startProcess runs path with args in its own process group. Its output is kept in p.out; stdout, when not nil,
// receives stdout instead, and onLine, when not nil, sees every line of p.out.
func startProcess(t testing.TB, stdout io.Writer, onLine func(string), path string, args ...string) (*process, error) {
	t.Helper()
	p := &process{out: &testkit.Buffer{OnLine: onLine}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	// Pdeathsig: a test binary that dies (a panic, a timeout) takes its peers with it instead of leaving them bound to ports.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = p.out
	p.cmd.Stdout = p.out
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p, nil
}

// kill ends the process group and waits for the process (bounded).
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// run runs a short-lived program with a deadline and returns its combined output.
func run(t testing.TB, timeout time.Duration, stdin []byte, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.Join(err, errors.New("timed out after "+timeout.String()))
	}
	return out.String(), err
}
