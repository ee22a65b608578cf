package smtp_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func expectReply(t *testing.T, scanner interface {
	Scan() bool
	Text() string
}, prefix string) {
	t.Helper()
	if !scanner.Scan() {
		t.Fatalf("connection ended; want %q", prefix)
	}
	if !strings.HasPrefix(scanner.Text(), prefix) {
		t.Fatalf("got %q, want %q", scanner.Text(), prefix)
	}
}

// An over-long command line is answered once and skipped: the commands the
// client pipelined after it are read in step (RFC 5321 3.8 allows closing
// the connection only after a 421).
func TestServer_TooLongCommand_staysInStep(t *testing.T) {
	be, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "MAIL FROM:<"+strings.Repeat("a", 100000)+"@example.org>\r\nNOOP\r\n")
	expectReply(t, scanner, "500 5.5.2 ")
	expectReply(t, scanner, "250 ")

	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\nRCPT TO:<"+strings.Repeat("b", 5000)+"@example.org>\r\nRCPT TO:<root@gchq.gov.uk>\r\nDATA\r\n")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "500 5.5.2 ")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "354 ")
	io.WriteString(c, "Hey <3\r\n.\r\n")
	expectReply(t, scanner, "250 ")
	if len(be.messages) != 1 || len(be.messages[0].To) != 1 {
		t.Fatalf("messages: %+v", be.messages)
	}
}

// The reply comes as soon as the line passes the limit, before its end
// arrives; the rest of the line is discarded when it does.
func TestServer_TooLongCommand_answeredBeforeItsEnd(t *testing.T) {
	_, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "MAIL FROM:<root@nsa.gov> "+strings.Repeat("A", s.MaxLineLength))
	expectReply(t, scanner, "500 5.5.2 ")
	io.WriteString(c, strings.Repeat("A", 3*s.MaxLineLength)+"\r\nNOOP\r\n")
	expectReply(t, scanner, "250 ")
}

// MaxLineLength counts the CRLF (RFC 5321 4.5.3.1.4).
func TestServer_MaxLineLength_boundary(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) {
		s.MaxLineLength = 100
	})
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "NOOP "+strings.Repeat("x", 100-len("NOOP \r\n"))+"\r\n")
	expectReply(t, scanner, "250 ")
	io.WriteString(c, "NOOP "+strings.Repeat("x", 101-len("NOOP \r\n"))+"\r\n")
	expectReply(t, scanner, "500 5.5.2 ")
	io.WriteString(c, "NOOP\r\n")
	expectReply(t, scanner, "250 ")
}

// An over-long response inside an AUTH exchange ends the exchange with a
// reply instead of leaving the client waiting.
func TestServer_TooLongAuthResponse(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "AUTH PLAIN\r\n")
	expectReply(t, scanner, "334 ")
	io.WriteString(c, strings.Repeat("QUFB", s.MaxLineLength)+"\r\n")
	expectReply(t, scanner, "500 5.5.2 ")
	io.WriteString(c, "NOOP\r\n")
	expectReply(t, scanner, "250 ")
}

// MaxLineLength applies to command lines: message content is bounded by
// MaxMessageBytes alone, in DATA as in BDAT.
func TestServer_LongLineInData(t *testing.T) {
	be, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	long := strings.Repeat("y", 10*s.MaxLineLength)
	io.WriteString(c, "MAIL FROM:<root@nsa.gov>\r\nRCPT TO:<root@gchq.gov.uk>\r\nDATA\r\n")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "354 ")
	io.WriteString(c, long+"\r\n.\r\nNOOP\r\n")
	expectReply(t, scanner, "250 ")
	expectReply(t, scanner, "250 ")
	if len(be.messages) != 1 || string(be.messages[0].Data) != long+"\r\n" {
		t.Fatalf("message not received intact")
	}
}

// A last command without its line ending is still run, as with textproto.
func TestServer_LastLineWithoutCRLF(t *testing.T) {
	_, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "QUIT")
	c.(*net.TCPConn).CloseWrite()
	expectReply(t, scanner, "221 ")
}

// Too many errors end the session with a 421 (RFC 5321 3.8), over-long lines
// counted with the others.
func TestServer_TooManyErrors_421(t *testing.T) {
	_, s, c, scanner := testServerAuthenticated(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	io.WriteString(c, "XXXX\r\nNOOP "+strings.Repeat("x", s.MaxLineLength)+"\r\nXXXX\r\nXXXX\r\n")
	expectReply(t, scanner, "500 5.5.2 Syntax errors")
	expectReply(t, scanner, "500 5.5.2 Line too long")
	expectReply(t, scanner, "500 5.5.2 Syntax errors")
	expectReply(t, scanner, "500 5.5.2 Syntax errors")
	expectReply(t, scanner, "421 4.7.0 Too many errors, closing connection")
	if scanner.Scan() {
		t.Fatalf("after the 421: %q", scanner.Text())
	}
}
