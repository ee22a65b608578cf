package relaytest

import (
	"bufio"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

func TestSink_SwaksEnvelopeAndBody(t *testing.T) {
	Require(t, "smtp-sink", "swaks")
	s := StartSink(t, SinkOptions{Addr: "127.0.0.3:0"})
	if s.Sessions() != 0 {
		t.Fatalf("sessions before any client: %d", s.Sessions())
	}
	out, err := Swaks(t, "--server", s.Addr(), "--helo", "client.test", "--from", "alice@example.test",
		"--to", "bob@example.org,carol@example.org", "--header", "Subject: sink self-test",
		"--body", "first line\n.dotted line\nlast line")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msgs := s.WaitMessages(t, 1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@example.test" || strings.Join(m.To, ",") != "bob@example.org,carol@example.org" {
		t.Errorf("envelope: from %q to %q", m.From, m.To)
	}
	if m.Helo != "client.test" || m.ClientAddr != "127.0.0.1" {
		t.Errorf("helo %q client %q", m.Helo, m.ClientAddr)
	}
	if got := m.Header().Get("Subject"); got != "sink self-test" {
		t.Errorf("Subject %q", got)
	}
	if body := string(m.Body()); !strings.Contains(body, "first line\n.dotted line\nlast line\n") {
		t.Errorf("body not kept (dot-unstuffed, LF lines): %q", body)
	}
	if waitSessions(s, 1) != 1 {
		t.Errorf("sessions = %d, want 1", s.Sessions())
	}
	s.Stop()
	if out, err := Swaks(t, "--server", s.Addr(), "--from", "a@example.test", "--to", "b@example.org"); err == nil {
		t.Errorf("a stopped sink still accepts mail:\n%s", out)
	}
	if len(s.Messages()) != 1 {
		t.Errorf("messages not readable after Stop")
	}
}

func TestSink_RejectRcpt(t *testing.T) {
	Require(t, "smtp-sink", "swaks")
	s := StartSink(t, SinkOptions{Reject: map[string]string{"RCPT": "550 5.1.1 No such user here"}})
	out, err := Swaks(t, "--server", s.Addr(), "--from", "a@example.test", "--to", "b@example.org")
	if err == nil {
		t.Fatalf("swaks succeeded against a sink that rejects RCPT:\n%s", out)
	}
	if !strings.Contains(out, "550 5.1.1 No such user here") {
		t.Errorf("reply not seen:\n%s", out)
	}
	if n := s.MessageCount(); n != 0 {
		t.Errorf("sink completed %d messages", n)
	}
}

func TestSink_SoftRejectData(t *testing.T) {
	Require(t, "smtp-sink", "swaks")
	s := StartSink(t, SinkOptions{Reject: map[string]string{"DATA": "451 4.3.0 try later"}})
	out, err := Swaks(t, "--server", s.Addr(), "--from", "a@example.test", "--to", "b@example.org")
	if err == nil || !strings.Contains(out, "451 4.3.0 try later") {
		t.Fatalf("want 451 to DATA, err %v:\n%s", err, out)
	}
}

func TestSink_MsmtpAndSessionCount(t *testing.T) {
	Require(t, "smtp-sink", "msmtp")
	s := StartSink(t, SinkOptions{Addr: "127.0.0.1:0"})
	for i := range 3 {
		msg := []byte("From: a@example.test\r\nTo: b@example.org\r\nSubject: n" + string(rune('0'+i)) + "\r\n\r\nhello\r\n")
		out, err := Msmtp(t, MsmtpConfig{Host: s.Host(), Port: s.Port(), From: "a@example.test"},
			[]string{"b@example.org"}, msg)
		if err != nil {
			t.Fatalf("msmtp: %v\n%s", err, out)
		}
	}
	msgs := s.WaitMessages(t, 3, 10*time.Second)
	if len(msgs) != 3 || waitSessions(s, 3) != 3 {
		t.Fatalf("messages %d sessions %d, want 3 and 3", len(msgs), s.Sessions())
	}
	for i, m := range msgs {
		if want := "n" + string(rune('0'+i)); m.Header().Get("Subject") != want {
			t.Errorf("message %d: Subject %q, want %q (order by arrival)", i, m.Header().Get("Subject"), want)
		}
	}
}

func TestSink_SmtpSourceLoad(t *testing.T) {
	Require(t, "smtp-sink", "smtp-source")
	s := StartSink(t, SinkOptions{NoDump: true})
	out, err := SmtpSource(t, "-s", "4", "-m", "40", "-l", "2048", "-f", "a@example.test", "-t", "b@example.org", s.Addr())
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	testkit.Eventually(10*time.Second, func() bool { return s.MessageCount() >= 40 })
	if s.MessageCount() != 40 || waitSessions(s, 40) != 40 {
		t.Fatalf("count %d sessions %d, want 40 and 40\n%s", s.MessageCount(), s.Sessions(), tail(s.Log(), 2000))
	}
	if len(s.Messages()) != 0 {
		t.Errorf("NoDump sink captured messages")
	}
}

func TestMakeCert_Verifies(t *testing.T) {
	certFile, keyFile, pool := MakeCert(t, t.TempDir(), "smarthost.test", "127.0.0.1")
	if certFile == "" || keyFile == "" || pool == nil {
		t.Fatal("empty result")
	}
	verifyCert(t, certFile, keyFile, pool, "smarthost.test")
	verifyCert(t, certFile, keyFile, pool, "127.0.0.1")
}

func TestSink_IPv6(t *testing.T) {
	Require(t, "smtp-sink", "swaks")
	s := StartSink(t, SinkOptions{Addr: "[::1]:0"})
	if out, err := Swaks(t, "--server", s.Addr(), "--from", "a@example.test", "--to", "b@example.org"); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if m := s.WaitMessages(t, 1, 10*time.Second)[0]; m.ClientAddr != "::1" || m.To[0] != "b@example.org" {
		t.Errorf("client %q to %q", m.ClientAddr, m.To)
	}
}

// Large messages reach the dump file in buffered parts, and a part can end with the blank line that also ends
// a whole dump: only closed files may count as messages.
func TestSink_LargeConcurrentMessagesComplete(t *testing.T) {
	Require(t, "smtp-sink")
	s := StartSink(t, SinkOptions{})
	body := strings.Repeat("line of text\r\n\r\n", 20000) // 320 KB, blank lines everywhere
	want := len(strings.ReplaceAll(body, "\r\n", "\n"))
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		go func() {
			msg := fmt.Sprintf("Subject: %d\r\n\r\n%s", i, body)
			errs <- smtp.SendMail(s.Addr(), nil, "a@example.test", []string{"b@example.org"}, []byte(msg))
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for seen := 0; seen < n && time.Now().Before(deadline); {
		msgs := s.Messages()
		for _, m := range msgs {
			if len(m.Body()) != want {
				t.Fatalf("%s: body of %d bytes listed, want %d", m.File, len(m.Body()), want)
			}
		}
		seen = len(msgs)
		time.Sleep(time.Millisecond)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(s.WaitMessages(t, n, 10*time.Second)); got != n {
		t.Errorf("%d messages, want %d", got, n)
	}
}

// TestSink_Transcripts: the sink's transcript of a swaks session lists its commands in order, probes left out.
func TestSink_Transcripts(t *testing.T) {
	Require(t, "smtp-sink", "swaks")
	sink := StartSink(t, SinkOptions{})
	if out, err := Swaks(t, "--server", sink.Addr(), "--ehlo", "swaks.test", "--from", "a@example.test", "--to", "b@example.org"); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	sink.WaitMessages(t, 1, 10*time.Second)
	var ts [][]string
	testkit.Eventually(10*time.Second, func() bool {
		ts = sink.Transcripts()
		return len(ts) == 1 && CountVerb(ts[0], "QUIT") == 1
	})
	want := "EHLO swaks.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.org>|DATA|.|QUIT"
	if len(ts) != 1 || strings.Join(ts[0], "|") != want {
		t.Errorf("transcripts %q, want one: %q\nsink log:\n%s", ts, want, sink.Log())
	}
}

// waitSessions returns the sink's session count once it has reached n (or after a bound): smtp-sink logs a
// connection on stderr, which may reach the counter after the messages its stdout reported.
func waitSessions(s *Sink, n int) int {
	testkit.Eventually(10*time.Second, func() bool { return s.Sessions() >= n })
	return s.Sessions()
}

// TestSink_Greeter421: a sink that greets with 421 starts, and turns every session away.
func TestSink_Greeter421(t *testing.T) {
	Require(t, "smtp-sink")
	s := StartSink(t, SinkOptions{Close421: []string{"CONNECT"}})
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 ") {
		t.Fatalf("greeting %q, %v; want a 421", line, err)
	}
}
