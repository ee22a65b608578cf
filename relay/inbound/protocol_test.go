package inbound

import (
	"regexp"
	"strings"
	"testing"

	"ptrelay/relay/relaytest"
)

// The replies RFC 5321 asks for where a client gets the protocol wrong, exactly as they go on the wire, and
// that the session goes on where it should (issue 15, item 3).

var sessionSuffix = regexp.MustCompile(` \(session ([0-9a-z]{8})\)$`)

// replyIs fails unless reply is want followed by the session's ID, and returns that ID.
func replyIs(t *testing.T, reply, want string) string {
	t.Helper()
	m := sessionSuffix.FindStringSubmatchIndex(reply)
	if m == nil || reply[:m[0]] != want {
		t.Fatalf("reply %q, want %q followed by (session ...)", reply, want)
	}
	return reply[m[2]:m[3]]
}

// A second MAIL inside a transaction is refused (RFC 5321 4.1.4) and the open transaction goes on; after the
// transaction, or after RSET, MAIL starts a new one.
func TestInbound_NestedMail(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("app.contoso.local")
	d.send("MAIL FROM:<first@contoso.com>")
	d.expect(250)
	d.send("MAIL FROM:<second@contoso.com>")
	replyIs(t, d.expect(503), "503 5.5.1 Error: nested MAIL command")
	d.send("RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(354)
	d.raw("Subject: first\r\n\r\nx\r\n.\r\n")
	d.expect(250)
	if ms := ts.messages(); len(ms) != 1 || ms[0].Envelope.From != "first@contoso.com" {
		t.Fatalf("queue: %+v", ms)
	}
	if code, text := d.sendMessage("second@contoso.com", []string{"b@example.org"}, "Subject: second\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("MAIL after a transaction: %q", text)
	}
	d.send("MAIL FROM:<third@contoso.com>", "RSET", "MAIL FROM:<fourth@contoso.com>")
	d.expect(250)
	d.expect(250)
	d.expect(250)
}

// A command line over the limit (here 100 KB: EHLO, MAIL, RCPT, DATA, an AUTH response) is answered 500 5.5.2
// and skipped; the session reads on in step, even with commands pipelined behind the long line, and takes the
// message. go-smtp alone answered "500 5.4.0 Too long line, closing connection" and hung up, which RFC 5321 3.8
// does not allow without a 421.
func TestInbound_TooLongCommandLines(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	big := strings.Repeat("a", 100000)
	const tooLong = "500 5.5.2 Line too long"

	d := dial(t, ts.addr)
	d.send("EHLO " + big)
	id := replyIs(t, d.expect(500), tooLong)
	d.ehlo("app.contoso.local")
	d.send("MAIL FROM:<"+big+"@contoso.com>", "NOOP") // pipelined behind the long line
	if got := replyIs(t, d.expect(500), tooLong); got != id {
		t.Fatalf("session %s, then %s", id, got)
	}
	d.expect(250)
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<"+big+"@example.org>", "RCPT TO:<b@example.org>")
	d.expect(250)
	replyIs(t, d.expect(500), tooLong)
	d.expect(250)
	// A fourth error would end the session (go-smtp's error limit, with a 421): start another.
	d.send("QUIT")
	d.expect(221)

	d = dial(t, ts.addr)
	d.ehlo("app.contoso.local")
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA "+big)
	d.expect(250)
	d.expect(250)
	replyIs(t, d.expect(500), tooLong)
	d.send("AUTH LOGIN")
	d.expect(334)
	d.send(big)
	replyIs(t, d.expect(500), tooLong)
	d.send("DATA")
	d.expect(354)
	d.raw("Subject: after long lines\r\n\r\nx\r\n.\r\n")
	d.expect(250)
	if ms := ts.messages(); len(ms) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(ms))
	}
}

// A client that keeps sending bad lines is sent away with a 421 before the close.
func TestInbound_TooManyErrors(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.send("XXXX", "XXXX", "XXXX", "NOOP "+strings.Repeat("x", 100000))
	for range 3 {
		d.expect(500)
	}
	replyIs(t, d.expect(500), "500 5.5.2 Line too long")
	replyIs(t, d.expect(421), "421 4.7.0 Too many errors, closing connection")
	if !d.closed() {
		t.Fatal("connection still open after the 421")
	}
}

// The error replies go-smtp writes itself carry the session ID like ptrelay's own, so the ID an Exchange queue
// shows finds the session in the journal; the texts are the ones docs/exchange.md lists.
func TestInbound_GoSMTPRepliesNameTheSession(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("scanner.contoso.local")
	d.send("MAIL FROM:<scanner>")
	id := replyIs(t, d.expect(501), "501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>")
	for _, c := range []struct{ cmd, want string }{
		{"MAIL FROM:<a@contoso.com> SIZE=2000000", "552 5.3.4 Max message size exceeded"},
		{"MAIL FROM:<a@contoso.com> SIZE=99999999999", "501 5.5.4 Unable to parse SIZE as an integer"},
	} {
		d.send(c.cmd)
		code, text := d.reply()
		if got := replyIs(t, text, c.want); got != id || code/100 != 5 {
			t.Fatalf("%s: %q in session %s", c.cmd, text, id)
		}
	}
	// One of ptrelay's own replies in the same session carries the same ID once.
	d.send("MAIL FROM:<a@contoso.com>", "MAIL FROM:<a@contoso.com>")
	d.expect(250)
	if got := replyIs(t, d.expect(503), "503 5.5.1 Error: nested MAIL command"); got != id {
		t.Fatalf("nested MAIL in session %s, earlier replies in %s", got, id)
	}
}

// The same with a real client: swaks sending a sender without a domain, 100 KB command lines and a 100 KB line
// in the body. Each is refused with the documented reply, and the session still answers swaks' QUIT.
func TestE2E_SwaksProtocolErrors(t *testing.T) {
	relaytest.Require(t, "swaks")
	ts := startServer(t, nil, serverOpt{})
	big := strings.Repeat("a", 100000)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"sender without a domain", []string{"--from", "scanner", "--to", "b@example.org"},
			"<** 501 5.5.2 Was expecting MAIL arg syntax of FROM:<address> (session "},
		{"100 KB EHLO", []string{"--ehlo", big, "--from", "a@contoso.com", "--to", "b@example.org"},
			"<** 500 5.5.2 Line too long (session "},
		{"100 KB MAIL", []string{"--from", big + "@contoso.com", "--to", "b@example.org"},
			"<** 500 5.5.2 Line too long (session "},
		{"100 KB RCPT", []string{"--from", "a@contoso.com", "--to", big + "@example.org"},
			"<** 500 5.5.2 Line too long (session "},
		{"100 KB line in the body", []string{"--from", "a@contoso.com", "--to", "b@example.org", "--body", big},
			"<** 554 5.6.0 Error: a line of the message is longer than 65536 bytes (session "},
	}
	for _, c := range cases {
		out, err := relaytest.Swaks(t, append([]string{"--server", ts.addr}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: swaks err %v, want %q in\n%s", c.name, err, c.want, clipLines(out))
		}
		if !strings.Contains(out, "<-  221 ") {
			t.Errorf("%s: the session did not answer QUIT:\n%s", c.name, clipLines(out))
		}
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

// clipLines shortens the long lines of a swaks transcript for an error message.
func clipLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if len(l) > 200 {
			lines[i] = l[:200] + "..."
		}
	}
	return strings.Join(lines, "\n")
}
