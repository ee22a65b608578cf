package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen binds a datagram socket like systemd's and points NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotify_Messages(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	cases := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"status", func() error { return Status("queue: 3 messages\nline two") }, "STATUS=queue: 3 messages line two"},
		{"raw", func() error { return Notify("ERRNO=5") }, "ERRNO=5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.send(); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, conn); got != c.want {
				t.Errorf("datagram %q, want %q", got, c.want)
			}
		})
	}
}

// clockMonotonicUsec reads CLOCK_MONOTONIC itself, not through the package, so that the test checks the clock
// systemd compares MONOTONIC_USEC with.
func clockMonotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestNotify_ReloadingCarriesMonotonicTime(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	before := clockMonotonicUsec(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	after := clockMonotonicUsec(t)
	got := receive(t, conn)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("datagram %q, want RELOADING=1 and MONOTONIC_USEC=", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d outside [%d, %d], CLOCK_MONOTONIC read before and after", usec, before, after)
	}
}

func TestNotify_AbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@ptrelay-sdnotify-test-%d", os.Getpid())
	conn := listen(t, name)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != "READY=1" {
		t.Errorf("datagram %q", got)
	}
}

func TestNotify_UnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, f := range []func() error{Ready, Stopping, Reloading, func() error { return Status("x") }} {
		if err := f(); err != nil {
			t.Errorf("with NOTIFY_SOCKET unset: %v", err)
		}
	}
}

func TestNotify_Errors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if err := Ready(); err == nil {
		t.Error("no error for a socket nobody listens on")
	}
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := Ready(); err == nil {
		t.Error("no error for an unsupported address")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name, usec, pid string
		want            time.Duration
		ok, bad         bool
	}{
		{"unset", "", "", 0, false, false},
		{"no pid", "30000000", "", 30 * time.Second, true, false},
		{"our pid", "2000000", self, 2 * time.Second, true, false},
		{"other pid", "2000000", "1", 0, false, false},
		{"garbage usec", "soon", "", 0, false, true},
		{"zero usec", "0", "", 0, false, true},
		{"garbage pid", "2000000", "me", 0, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", c.usec)
			t.Setenv("WATCHDOG_PID", c.pid)
			got, ok, err := WatchdogInterval()
			if got != c.want || ok != c.ok || errors.Is(err, ErrBadWatchdog) != c.bad {
				t.Errorf("got (%v, %v, %v), want (%v, %v, bad=%v)", got, ok, err, c.want, c.ok, c.bad)
			}
		})
	}
}

func TestWatchdog_Pings(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	// 20ms timeout: pings every 10ms. The test counts pings, never timing.
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx) }()
	for i := range 3 {
		if got := receive(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q", i, got)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog did not return after cancel")
	}
}

func TestWatchdog_NotOurs(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", "1")
	// It must return at once without pinging: the watchdog belongs to another process.
	if err := Watchdog(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("got a datagram (%d bytes) for another process's watchdog", n)
	}
}
