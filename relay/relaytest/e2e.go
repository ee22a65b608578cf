package relaytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildBinary builds ./cmd/ptrelay once per test process (with -race when the tests run with it) and returns
// the binary's path. The binary lives in a temporary directory named after this process; directories left by
// earlier test processes that are gone are removed.
func BuildBinary(t testing.TB) string {
	t.Helper()
	Require(t, "go")
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("relaytest: build ptrelay: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	goBin := lookup("go")
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the ptrelay module")
	}
	removeStaleBuilds()
	dir, err := os.MkdirTemp("", "relaytest-ptrelay-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ptrelay")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ptrelay")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
}

// removeStaleBuilds deletes the build directories of test processes that have ended.
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "relaytest-ptrelay-*"))
	for _, d := range dirs {
		parts := strings.Split(filepath.Base(d), "-")
		if len(parts) < 3 {
			continue
		}
		if pid, err := strconv.Atoi(parts[2]); err == nil && pid != os.Getpid() && !alive(pid) {
			os.RemoveAll(d)
		}
	}
}

// DaemonOptions configures StartDaemonWith.
type DaemonOptions struct {
	Config string   // the TOML configuration; smtp.listen's first address must have a fixed port (FreePort)
	Env    []string // extra environment, "KEY=value" (e.g. NOTIFY_SOCKET, GODEBUG)
	Args   []string // extra "serve" flags, e.g. "-log-level", "debug"
	// NoWait returns as soon as the process started, without waiting for the listen address: for tests of
	// start-up failures.
	NoWait bool
}

// Daemon is a running `ptrelay serve` process.
type Daemon struct {
	t          testing.TB
	bin        string
	dir        string
	configFile string
	addr       string
	opt        DaemonOptions
	mu         sync.Mutex
	proc       *process
	logs       []*testkit.Buffer // one per run, oldest first
}

// StartDaemon writes configTOML to a file and runs `ptrelay serve -config FILE` with a fresh working
// directory (so relative defaults such as ./ptrelay-data land in it), waits until the first smtp.listen address
// accepts connections, and kills the process when the test ends.
func StartDaemon(t testing.TB, configTOML string) *Daemon {
	t.Helper()
	return StartDaemonWith(t, DaemonOptions{Config: configTOML})
}

var listenRE = regexp.MustCompile(`(?m)^\s*listen\s*=\s*\[\s*"([^"]+)"`)

// StartDaemonWith is StartDaemon with environment, flags and waiting under the caller's control.
func StartDaemonWith(t testing.TB, opt DaemonOptions) *Daemon {
	t.Helper()
	d := &Daemon{t: t, bin: BuildBinary(t), dir: t.TempDir(), opt: opt}
	d.configFile = filepath.Join(d.dir, "ptrelay.toml")
	if err := os.WriteFile(d.configFile, []byte(opt.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	if m := listenRE.FindStringSubmatch(opt.Config); m != nil {
		d.addr = m[1]
	} else if !opt.NoWait {
		t.Fatal("relaytest: StartDaemon needs smtp.listen in the configuration to know when the relay is up")
	}
	d.start()
	return d
}

// env is the test's environment without the systemd variables that would change where the daemon keeps its
// state or whom it notifies, plus the caller's.
func (d *Daemon) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "STATE_DIRECTORY", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC",
			"WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "PTRELAY_CONFIG":
			continue
		}
		env = append(env, kv)
	}
	return append(env, d.opt.Env...)
}

func (d *Daemon) start() {
	d.t.Helper()
	log := &testkit.Buffer{}
	p := &process{out: log, done: make(chan struct{})}
	args := append([]string{"serve", "-config", d.configFile}, d.opt.Args...)
	p.cmd = exec.Command(d.bin, args...)
	p.cmd.Dir = d.dir
	p.cmd.Env = d.env()
	p.cmd.Stdout = log
	p.cmd.Stderr = log
	// Pdeathsig: a test binary that dies (a panic, a timeout) takes its peers with it instead of leaving them bound to ports.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		d.t.Fatalf("relaytest: start ptrelay: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	d.t.Cleanup(p.kill)
	d.mu.Lock()
	d.proc = p
	d.logs = append(d.logs, log)
	d.mu.Unlock()
	if d.opt.NoWait {
		return
	}
	if err := waitTCP(d.addr, 60*time.Second, p.done); err != nil {
		d.t.Fatalf("relaytest: ptrelay serve: %v\nstderr:\n%s", err, tail(log.String(), 8000))
	}
}

// Addr is the first smtp.listen address.
func (d *Daemon) Addr() string { return d.addr }

// Dir is the daemon's working directory (the default data_dir ./ptrelay-data is inside it).
func (d *Daemon) Dir() string { return d.dir }

// ConfigFile is the path of the configuration file, for `ptrelay ... -config` commands.
func (d *Daemon) ConfigFile() string { return d.configFile }

// Pid is the current process id.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc.cmd.Process.Pid
}

// Signal sends sig to the daemon (SIGHUP for a reload).
func (d *Daemon) Signal(sig syscall.Signal) {
	d.t.Helper()
	if err := syscall.Kill(d.Pid(), sig); err != nil {
		d.t.Fatalf("relaytest: signal %v: %v", sig, err)
	}
}

// Kill sends SIGKILL (a crash: no drain, no clean close) and waits for the process to be gone.
func (d *Daemon) Kill() {
	d.t.Helper()
	if d.Exited() {
		return
	}
	d.Signal(syscall.SIGKILL)
	if _, err := d.Wait(30 * time.Second); err != nil {
		d.t.Fatal(err)
	}
}

// Stop sends SIGTERM and waits up to 60 s for the process to exit; it returns the exit code (0 for a clean
// drain) and fails the test when the process does not exit. On a process that already ended it only returns
// the exit code.
func (d *Daemon) Stop() int {
	d.t.Helper()
	if !d.Exited() {
		d.Signal(syscall.SIGTERM)
	}
	code, err := d.Wait(60 * time.Second)
	if err != nil {
		d.t.Fatalf("relaytest: %v\nstderr:\n%s", err, tail(d.Stderr(), 8000))
	}
	return code
}

// Wait waits for the process to exit by itself and returns its exit code (-1 when killed by a signal).
func (d *Daemon) Wait(timeout time.Duration) (int, error) {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("ptrelay (pid %d) still running after %v", p.cmd.Process.Pid, timeout)
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

// Exited reports whether the current process has ended.
func (d *Daemon) Exited() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc.exited()
}

// Restart starts the daemon again with the same configuration, working directory and data, after Kill or Stop
// (a still-running process is stopped first), and waits until it accepts connections.
func (d *Daemon) Restart() {
	d.t.Helper()
	if !d.Exited() {
		d.Stop()
	}
	d.start()
}

// Stderr is everything the daemon wrote (stderr and stdout) over all its runs, each run after a marker line.
func (d *Daemon) Stderr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for i, l := range d.logs {
		if len(d.logs) > 1 {
			fmt.Fprintf(&b, "--- run %d ---\n", i+1)
		}
		b.WriteString(l.String())
	}
	return b.String()
}

// Command runs another ptrelay subcommand against the same configuration, e.g. Command(t, "queue", "list",
// "-json"), and returns its combined output; err is non-nil on a non-zero exit.
func (d *Daemon) Command(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, append(args, "-config", d.configFile)...)
	cmd.Dir = d.dir
	cmd.Env = d.env()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("ptrelay %s: timed out after %v: %w", strings.Join(args, " "), clientTimeout, err)
	}
	return string(out), err
}
