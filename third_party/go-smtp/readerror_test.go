package smtp_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var errShuttingDown = &smtp.SMTPError{
	Code:         421,
	EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message:      "Service shutting down",
}

// endingConn fails the read that brings "END\r\n" with errShuttingDown, as a
// connection wrapper of a server that is shutting down would.
type endingConn struct{ net.Conn }

func (c endingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if bytes.HasPrefix(p[:n], []byte("END\r\n")) {
		return 0, errShuttingDown
	}
	return n, err
}

type endingListener struct{ net.Listener }

func (l endingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return endingConn{c}, nil
}

func testServerEndingConn(t *testing.T) (net.Conn, *bufio.Scanner) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(new(backend))
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	go s.Serve(endingListener{l})
	t.Cleanup(func() { s.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	scanner := bufio.NewScanner(c)
	expectReply(t, scanner, "220 ")
	io.WriteString(c, "HELO localhost\r\n")
	expectReply(t, scanner, "250 ")
	return c, scanner
}

// expectLastReply reads the rest of the connection: one reply, then the end.
func expectLastReply(t *testing.T, c net.Conn, scanner *bufio.Scanner, want string) {
	t.Helper()
	expectReply(t, scanner, want)
	if scanner.Scan() {
		t.Fatalf("after the last reply: %q", scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("connection not closed after the last reply: %v", err)
	}
}

// A read error that is an *SMTPError is the server's last reply, between
// commands.
func TestServer_ReadErrorIsReply(t *testing.T) {
	c, scanner := testServerEndingConn(t)
	io.WriteString(c, "END\r\n")
	expectLastReply(t, c, scanner, "421 4.3.2 Service shutting down")
}

// The same inside an AUTH exchange, which reads lines of its own.
func TestServer_ReadErrorIsReply_auth(t *testing.T) {
	c, scanner := testServerEndingConn(t)
	io.WriteString(c, "AUTH PLAIN\r\n")
	expectReply(t, scanner, "334 ")
	io.WriteString(c, "END\r\n")
	expectLastReply(t, c, scanner, "421 4.3.2 Service shutting down")
}

// Other read errors are answered as before.
func TestServer_ReadTimeout(t *testing.T) {
	_, s, c, scanner := testServerGreeted(t, func(s *smtp.Server) {
		s.ReadTimeout = 50 * time.Millisecond
	})
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "421 4.4.2 ") {
		t.Fatalf("after the read timeout: %q, %v", scanner.Text(), scanner.Err())
	}
}
