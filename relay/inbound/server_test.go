package inbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// 200 clients at once (the default max_connections), each relaying one message with go-smtp's client.
func TestInbound_200Concurrent(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.MaxConnections = 200
	ts := startServer(t, cfg, serverOpt{})
	const n = 200
	conns := make([]*smtp.Client, n)
	for i := range conns { // all connected and greeted before any sends
		c, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if err := c.Hello(fmt.Sprintf("c%d.contoso.local", i)); err != nil {
			t.Fatalf("client %d EHLO: %v", i, err)
		}
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i)
			if err := c.SendMail(fmt.Sprintf("s%d@contoso.com", i), []string{fmt.Sprintf("r%d@example.org", i)}, strings.NewReader(body)); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			errs <- c.Quit()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ms := ts.messages()
	if len(ms) != n {
		t.Fatalf("queue holds %d messages, want %d", len(ms), n)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		seen[m.Envelope.From] = true
		if want := strings.Replace(strings.Replace(m.Envelope.From, "s", "r", 1), "contoso.com", "example.org", 1); m.Recipients[0].Addr != want {
			t.Errorf("message from %s went to %s", m.Envelope.From, m.Recipients[0].Addr)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct senders in the queue", len(seen))
	}
}

func TestInbound_MaxConnections(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.MaxConnections = 3
	ts := startServer(t, cfg, serverOpt{})
	for i := 0; i < 3; i++ {
		dial(t, ts.addr).ehlo("x")
	}
	c, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !strings.HasPrefix(string(got), "421 4.7.0 ") || !strings.Contains(string(got), "session") {
		t.Fatalf("4th connection got %q", got)
	}
	if n := ts.hooks.refusedCount(RefusedConnections); n != 1 {
		t.Errorf("OnRefused(too_many_connections) %d times", n)
	}
	ts.hooks.mu.Lock()
	sessions := ts.hooks.sessions
	ts.hooks.mu.Unlock()
	if sessions != 3 {
		t.Errorf("OnSession balance %d with 3 clients connected", sessions)
	}
}

// A reload applies to new sessions; the session in flight keeps the settings it started with.
func TestInbound_ReloadKeepsSessionsInFlight(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	old := dial(t, ts.addr)
	old.ehlo("x")
	cfg := testConfig(t)
	cfg.SMTP.AllowedNetworks = []string{"10.0.0.0/8"} // loopback may no longer relay
	if err := ts.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	code, text := old.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: x\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("session in flight after reload: %q", text)
	}
	nw := dial(t, ts.addr)
	nw.ehlo("x")
	nw.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
	nw.expect(250)
	nw.expect(554)
	bad := testConfig(t)
	bad.SMTP.BareNewlines = "sometimes"
	if err := ts.srv.Reload(bad); err == nil || !strings.Contains(err.Error(), "bare_newlines") {
		t.Fatalf("bad reload: %v", err)
	}
}

// Shutdown closes idle connections at once with 421, lets a transaction in flight finish, refuses new
// connections, and returns when the last session is gone.
func TestInbound_Shutdown(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	idle := dial(t, ts.addr)
	idle.ehlo("x")
	busy := dial(t, ts.addr)
	busy.ehlo("x")
	busy.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	busy.expect(250)
	busy.expect(250)
	busy.expect(354)

	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	// 4.3.2, "system not accepting network messages", is what Exchange's queue then shows (go-smtp alone says
	// "421 4.4.2 Idle timeout").
	shuttingDown := regexp.MustCompile(`^421 4\.3\.2 Service shutting down, try again later \(session [0-9a-z]{8}\)$`)
	if text := idle.expect(421); !shuttingDown.MatchString(text) || !idle.closed() {
		t.Fatalf("idle connection at shutdown: %q", text)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a transaction in flight", err)
	default:
	}
	// The message in flight is still accepted, then the session is closed.
	busy.raw("Subject: last\r\n\r\nx\r\n.\r\n")
	busy.expect(250)
	if text := busy.expect(421); !shuttingDown.MatchString(text) {
		t.Fatalf("session after its transaction during shutdown: %q", text)
	}
	if !busy.closed() {
		t.Fatal("session still open after its transaction during shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	if ms := ts.messages(); len(ms) != 1 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
	ts.srv = nil // shut down already: the cleanup must not do it again
}

// At the deadline, a session stuck in the middle of a message is closed and nothing of it is queued.
func TestInbound_ShutdownDeadline(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	stuck := dial(t, ts.addr)
	stuck.ehlo("x")
	stuck.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	stuck.expect(250)
	stuck.expect(250)
	stuck.expect(354)
	stuck.raw("Subject: never finished\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck session: %v", err)
	}
	_ = stuck.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(stuck.r); err != nil {
		t.Fatalf("stuck session not closed: %v", err)
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
	ts.srv = nil
}
