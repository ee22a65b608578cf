package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// The operations tests drive the built binary the way an admin does: `ptrelay serve` as a process, the queue
// and status commands against it while it runs and against its database once it is stopped, and smtp-sink as
// the smart host, so that what they assert is what reached a real peer.

// opsConfig is a daemon on listen that sends everything to smarthost without TLS or AUTH and keeps DNS and the
// egress checks on dead loopback ports, so nothing leaves the machine. extra is appended as is (more tables).
func opsConfig(listen, smarthost, retryMin, extra string) string {
	return fmt.Sprintf(`hostname = "relay.ops.test"

[smtp]
listen = [%q]

[[smarthosts]]
name = "isp"
address = %q
tls = "none"

[routing]
mode = "smarthost"

[queue]
retry_min = %q
retry_max = "2h"

[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"

[egress]
ip = "192.0.2.10"
whoami = ["127.0.0.1:9"]
dnsbl = []
port25_probe = "127.0.0.1:9"
%s`, listen, smarthost, retryMin, extra)
}

// startDaemon is relaytest.StartDaemonWith with the race detector's one-second sleep at exit turned off (every
// CLI command of a -race binary would otherwise take a second longer, and these tests run dozens), and with the
// daemon's log checked for race reports at the end.
func startDaemon(t *testing.T, opt relaytest.DaemonOptions) *relaytest.Daemon {
	t.Helper()
	opt.Env = append([]string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}, opt.Env...)
	d := relaytest.StartDaemonWith(t, opt)
	// A daemon the test does not stop is killed at cleanup, where its exit code (66 after a race) goes unseen.
	t.Cleanup(func() {
		if log := d.Stderr(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("the daemon reported a data race:\n%s", log)
		}
	})
	return d
}

// loopbackAddr is a free "host:port" on host, for a listener started later (the daemon, or a sink that is "down"
// at first).
func loopbackAddr(t *testing.T, host string) string {
	t.Helper()
	return net.JoinHostPort(host, fmt.Sprint(relaytest.FreePort(t, host)))
}

// inject sends one message from 127.0.0.1 and returns the queue ID of the 250 reply; any other reply fails
// the test.
func inject(t *testing.T, addr, from, to, subject string) string {
	t.Helper()
	id, err := injectFrom(addr, "", from, to, subject)
	if err != nil {
		t.Fatalf("sending %q through %s: %v", subject, addr, err)
	}
	return id
}

// injectFrom sends one message, from the local address laddr when not "", and returns the queue ID of the 250
// reply; the error is the relay's reply (*smtp.SMTPError) or a network failure.
func injectFrom(addr, laddr, from, to, subject string) (string, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.ops.test"); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nbody of %s\r\n", from, to, subject, subject)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_ = c.Quit()
	m := queuedAsRE.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("250 without a queue ID: %q", resp.StatusText)
	}
	return m[1], nil
}

// ptrelay runs a subcommand against d's configuration and returns its combined output and exit code.
func ptrelay(t *testing.T, d *relaytest.Daemon, args ...string) (string, int) {
	t.Helper()
	out, err := d.Command(t, args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("ptrelay %s: %v\n%s", strings.Join(args, " "), err, out)
	return "", 0
}

// mustPtrelay runs a subcommand that must succeed.
func mustPtrelay(t *testing.T, d *relaytest.Daemon, args ...string) string {
	t.Helper()
	out, code := ptrelay(t, d, args...)
	if code != 0 {
		t.Fatalf("ptrelay %s: exit %d\n%s\ndaemon log:\n%s", strings.Join(args, " "), code, out, tailLog(d))
	}
	return out
}

func tailLog(d *relaytest.Daemon) string {
	s := d.Stderr()
	if len(s) > 6000 {
		s = "..." + s[len(s)-6000:]
	}
	return s
}

// queueList is `queue list -json` as a map from ID to message.
func queueList(t *testing.T, d *relaytest.Daemon) map[string]*queue.Message {
	t.Helper()
	out := mustPtrelay(t, d, "queue", "list", "-json")
	var l struct {
		Messages []*queue.Message `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("queue list -json: %v\n%s", err, out)
	}
	byID := make(map[string]*queue.Message, len(l.Messages))
	for _, m := range l.Messages {
		byID[m.ID] = m
	}
	return byID
}

// states is every recipient's state of m, in order.
func states(m *queue.Message) string {
	if m == nil {
		return "gone"
	}
	var s []string
	for _, r := range m.Recipients {
		s = append(s, string(r.State))
	}
	return strings.Join(s, ",")
}

// waitStates waits until every given message's recipients are in want ("gone" for a message no longer queued).
func waitStates(t *testing.T, d *relaytest.Daemon, want string, ids ...string) {
	t.Helper()
	var q map[string]*queue.Message
	testkit.WaitForExplained(t, 30*time.Second, func() string {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, "%s: %s (want %s)\n", id, states(q[id]), want)
		}
		return b.String() + "daemon log:\n" + tailLog(d)
	}, func() bool {
		q = queueList(t, d)
		for _, id := range ids {
			if states(q[id]) != want {
				return false
			}
		}
		return true
	})
}

// waitDeferred waits until each message's recipients were tried and deferred.
func waitDeferred(t *testing.T, d *relaytest.Daemon, ids ...string) {
	t.Helper()
	waitStates(t, d, "deferred", ids...)
}

// subjects lists the Subject of every message at the sink.
func subjects(msgs []relaytest.SinkMessage) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Header().Get("Subject"))
	}
	return s
}

// bySubject returns the sink's message with that subject, or nil.
func bySubject(msgs []relaytest.SinkMessage, subject string) *relaytest.SinkMessage {
	for i := range msgs {
		if msgs[i].Header().Get("Subject") == subject {
			return &msgs[i]
		}
	}
	return nil
}

// dsnsAt returns the sink's multipart/report messages.
func dsnsAt(msgs []relaytest.SinkMessage) []relaytest.SinkMessage {
	var out []relaytest.SinkMessage
	for _, m := range msgs {
		if strings.HasPrefix(m.Header().Get("Content-Type"), "multipart/report") {
			out = append(out, m)
		}
	}
	return out
}

// assertDSN checks that dsn is a failure report from the null sender to sender about the message with subject.
func assertDSN(t *testing.T, dsn relaytest.SinkMessage, sender, rcpt, subject string) {
	t.Helper()
	data := string(dsn.Data)
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != sender {
		t.Errorf("DSN envelope from <%s> to %v, want <> to [%s]", dsn.From, dsn.To, sender)
	}
	for _, want := range []string{"report-type=delivery-status", "Action: failed", "Final-Recipient: rfc822;" + rcpt, subject} {
		if !strings.Contains(strings.ReplaceAll(data, "rfc822; ", "rfc822;"), want) {
			t.Errorf("DSN lacks %q:\n%s", want, data)
		}
	}
}

// dueSoon reports whether a recipient is due within d (retry or release made it due now).
func dueSoon(r queue.Recipient, d time.Duration) bool {
	return !r.NextAttempt.IsZero() && time.Until(r.NextAttempt) < d
}

// transaction is an SMTP client stopped after RCPT, to hold a session open across a signal.
type transaction struct {
	c *smtp.Client
}

func openTransaction(t *testing.T, addr, from, to string) *transaction {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.ops.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatal(err)
	}
	return &transaction{c}
}

// finish sends DATA and returns the queue ID of the 250; any other outcome fails the test.
func (tr *transaction) finish(t *testing.T, subject string) string {
	t.Helper()
	w, err := tr.c.Data()
	if err != nil {
		t.Fatalf("DATA of %q: %v", subject, err)
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nbody\r\n", subject)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of data of %q: %v", subject, err)
	}
	m := queuedAsRE.FindStringSubmatch(resp.StatusText)
	if m == nil {
		t.Fatalf("%q: 250 without a queue ID: %q", subject, resp.StatusText)
	}
	return m[1]
}
