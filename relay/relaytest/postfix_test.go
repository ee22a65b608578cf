package relaytest

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestPostfix_RelaysAuthenticatedMail(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "postfix", "saslpasswd2")
	RequireRoot(t)
	sink := StartSink(t, SinkOptions{Addr: "127.0.0.3:0"})
	pf := StartPostfix(t, PostfixOptions{
		Addr:            "127.0.0.4:0",
		ImplicitTLSAddr: "127.0.0.4:0",
		Users:           map[string]string{"relayuser": "s3cret pass"},
		RelayTo:         sink.Addr(),
	})
	out, err := Swaks(t, "--server", pf.Addr(), "--tls", "--auth", "LOGIN", "--auth-user", "relayuser",
		"--auth-password", "s3cret pass", "--from", "app@example.test", "--to", "dest@example.org",
		"--header", "Subject: via postfix")
	if err != nil {
		t.Fatalf("swaks: %v\n%s\nmaillog:\n%s", err, out, pf.Log())
	}
	msgs := sink.WaitMessages(t, 1, 30*time.Second)
	m := msgs[0]
	if m.From != "app@example.test" || len(m.To) != 1 || m.To[0] != "dest@example.org" {
		t.Errorf("envelope at the sink: from %q to %q", m.From, m.To)
	}
	if m.Header().Get("Subject") != "via postfix" || !strings.Contains(string(m.Data), "by smarthost.test (Postfix)") {
		t.Errorf("message not relayed by Postfix:\n%s", m.Data)
	}

	// Implicit TLS and AUTH PLAIN on the second listener, through msmtp.
	msg := []byte("From: app@example.test\r\nTo: dest@example.org\r\nSubject: implicit\r\n\r\nhi\r\n")
	host, port := splitHostPort(t, pf.ImplicitTLSAddr())
	out, err = Msmtp(t, MsmtpConfig{Host: host, Port: port, From: "app@example.test", TLS: true,
		TrustFile: pf.CertFile(), Auth: "plain", User: "relayuser", Password: "s3cret pass"},
		[]string{"dest@example.org"}, msg)
	if err != nil {
		t.Fatalf("msmtp implicit TLS: %v\n%s\nmaillog:\n%s", err, out, pf.Log())
	}
	msgs = sink.WaitMessages(t, 2, 30*time.Second)
	if msgs[1].Header().Get("Subject") != "implicit" {
		t.Errorf("second message: %q", msgs[1].Header().Get("Subject"))
	}
}

func TestPostfix_RefusesWrongPasswordAndUnauthenticated(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "postfix", "saslpasswd2")
	RequireRoot(t)
	sink := StartSink(t, SinkOptions{})
	pf := StartPostfix(t, PostfixOptions{Users: map[string]string{"relayuser": "right"}, RelayTo: sink.Addr()})
	out, err := Swaks(t, "--server", pf.Addr(), "--tls", "--auth", "PLAIN", "--auth-user", "relayuser",
		"--auth-password", "wrong", "--from", "app@example.test", "--to", "dest@example.org")
	if err == nil || !strings.Contains(out, "535 5.7.8") {
		t.Errorf("wrong password: want 535 5.7.8, err %v\n%s", err, out)
	}
	out, err = Swaks(t, "--server", pf.Addr(), "--tls", "--from", "app@example.test", "--to", "dest@example.org")
	if err == nil || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("no AUTH: want 554 5.7.1 relay denied, err %v\n%s", err, out)
	}
	if n := sink.MessageCount(); n != 0 || pf.QueueCount() != 0 {
		t.Errorf("refused mail went somewhere: sink %d, queue %d", n, pf.QueueCount())
	}
	pf.Stop()
	if c, err := net.DialTimeout("tcp", pf.Addr(), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("a stopped Postfix still accepts connections on %s", pf.Addr())
	}
}

// Two instances at once, one of them on IPv6 loopback relaying to an IPv6 sink.
func TestPostfix_TwoInstancesAtOnce(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "postfix", "saslpasswd2")
	RequireRoot(t)
	sink := StartSink(t, SinkOptions{})
	sink6 := StartSink(t, SinkOptions{Addr: "[::1]:0"})
	a := StartPostfix(t, PostfixOptions{Users: map[string]string{"u": "p"}, RelayTo: sink.Addr(), AuthWithoutTLS: true})
	b := StartPostfix(t, PostfixOptions{Addr: "[::1]:0", Users: map[string]string{"u": "p"}, RelayTo: sink6.Addr(),
		AuthWithoutTLS: true})
	for _, pf := range []*Postfix{a, b} {
		out, err := Swaks(t, "--server", pf.Addr(), "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p",
			"--from", "x@example.test", "--to", "y@example.org")
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s\n%s", pf.Addr(), err, out, pf.Log())
		}
	}
	sink.WaitMessages(t, 1, 30*time.Second)
	if m := sink6.WaitMessages(t, 1, 30*time.Second)[0]; m.ClientAddr != "::1" {
		t.Errorf("IPv6 instance relayed from %q, want ::1", m.ClientAddr)
	}
	if sink.MessageCount() != 1 {
		t.Errorf("IPv4 sink has %d messages, want 1", sink.MessageCount())
	}
}

// TestPostfix_Transcripts: with LogCommands, the transcript of a swaks session over STARTTLS with AUTH LOGIN
// lists its commands in order, the EHLO after STARTTLS included.
func TestPostfix_Transcripts(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "postfix", "saslpasswd2")
	RequireRoot(t)
	sink := StartSink(t, SinkOptions{})
	pf := StartPostfix(t, PostfixOptions{Users: map[string]string{"u": "p"}, RelayTo: sink.Addr(), LogCommands: true})
	out, err := Swaks(t, "--server", pf.Addr(), "--tls", "--auth", "LOGIN", "--auth-user", "u", "--auth-password", "p",
		"--ehlo", "swaks.test", "--from", "app@example.test", "--to", "dest@example.org")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if ts := pf.Transcripts(); len(ts) == 1 && CountVerb(ts[0], "QUIT") == 1 {
			got = ts[0]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := "EHLO swaks.test|STARTTLS|EHLO swaks.test|AUTH LOGIN|MAIL FROM:<app@example.test>|RCPT TO:<dest@example.org>|DATA|QUIT"
	if strings.Join(got, "|") != want {
		t.Errorf("transcript %q\nwant %q\nmaillog:\n%s", strings.Join(got, "|"), want, pf.Log())
	}
}
