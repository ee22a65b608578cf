package relaytest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FreePort returns a TCP port that was free on host a moment ago (listen on port 0, close). Another process may
// take it before the caller binds it, so launchers that use it retry with a new port on a bind failure.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("relaytest: no free port on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts a TCP connection, failing the test after timeout. The probe is a real
// connection: a peer that counts sessions (smtp-sink) sees it.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitTCP(addr, timeout, nil); err != nil {
		t.Fatalf("relaytest: %v", err)
	}
}

// waitTCP dials addr until it answers, the deadline passes or exited is closed (the server died).
func waitTCP(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %v", addr, timeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("the server for %s exited before accepting connections", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// splitAddr splits "host:port" and picks a free port when the port is 0 or missing.
func splitAddr(t testing.TB, addr, defHost string) (host string, port int, pick bool) {
	t.Helper()
	if addr == "" {
		return defHost, 0, true
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("relaytest: bad address %q: %v", addr, err)
	}
	if h == "" {
		h = defHost
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("relaytest: bad port in %q", addr)
	}
	return h, n, n == 0
}

// bindAttempts bounds the retries of a launcher whose port was taken between FreePort and its bind.
const bindAttempts = 5

// isBindError reports whether a peer's log says its listening address was taken.
func isBindError(log string) bool {
	return strings.Contains(log, "in use") || strings.Contains(log, "bind")
}
