// Package sdnotify speaks systemd's notification protocol (sd_notify(3)): one datagram of newline-separated
// KEY=VALUE assignments sent to the Unix socket named by $NOTIFY_SOCKET. It is what Type=notify and
// Type=notify-reload units and WatchdogSec= need. It owns nothing but that protocol: it knows neither the relay
// nor its configuration, and it has no dependency on libsystemd or go-systemd.
//
// Every function is a no-op returning nil when $NOTIFY_SOCKET is unset, so the daemon calls them unconditionally
// and runs the same way under systemd, in a container or in a terminal.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends state (for example "READY=1" or "STATUS=queue: 3 messages") in one datagram. Names starting
// with '@' are Linux abstract sockets; Go's socket address encoding turns the '@' into the leading NUL byte.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] != '/' && name[0] != '@' {
		// systemd also accepts vsock:CID:PORT (for VMs); a relay never runs with that, so say so plainly.
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q is neither a path nor an abstract socket name", name)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	// A datagram socket to systemd never blocks for long, but a stuck receiver must not stall the daemon.
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up finished: listeners are bound and the queue is open.
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that shutdown (the drain) has begun.
func Stopping() error { return Notify("STOPPING=1") }

// Status sets the one-line free-form status shown by systemctl status. Newlines would end the assignment, so
// they become spaces.
func Status(text string) error {
	return Notify("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text))
}

// Reloading tells systemd that a configuration reload has begun; send Ready when it is over, successful or not.
// MONOTONIC_USEC is sent along because Type=notify-reload (systemd 253 and later) requires it to match the
// reload to the request; Type=notify units accept the same message.
func Reloading() error {
	usec, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("sdnotify: reading CLOCK_MONOTONIC: %w", err)
	}
	return Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec))
}

func monotonicUsec() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return ts.Nano() / 1000, nil
}

// ErrBadWatchdog is returned by WatchdogInterval when $WATCHDOG_USEC or $WATCHDOG_PID cannot be parsed.
var ErrBadWatchdog = errors.New("sdnotify: malformed WATCHDOG_USEC or WATCHDOG_PID")
