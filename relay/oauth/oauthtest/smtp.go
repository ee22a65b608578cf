package oauthtest

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPServer is a go-smtp server on loopback that offers STARTTLS (with the given certificate) and AUTH XOAUTH2
// only, accepting the tokens check accepts: a stand-in for Microsoft 365's or Google's submission port.
type SMTPServer struct {
	Addr string

	mu       sync.Mutex
	tokens   []string // presented, in order
	commands []string // MAIL, RCPT, DATA as they came
}

// StartSMTP starts the server for the length of the test.
func StartSMTP(t testing.TB, cert tls.Certificate, check func(user, token string) bool) *SMTPServer {
	t.Helper()
	s := &SMTPServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s, check: check}, nil }))
	srv.Domain = "smtp.oauth.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Tokens are the tokens clients presented, in order.
func (s *SMTPServer) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

// Commands are the transaction commands clients sent (a login check sends none).
func (s *SMTPServer) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *SMTPServer) note(list *[]string, v string) {
	s.mu.Lock()
	*list = append(*list, v)
	s.mu.Unlock()
}

type smtpSession struct {
	s     *SMTPServer
	check func(user, token string) bool
}

func (x *smtpSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }

func (x *smtpSession) Auth(string) (sasl.Server, error) {
	return XOAUTH2Server(func(user, tok string) bool {
		x.s.note(&x.s.tokens, tok)
		return x.check(user, tok)
	}), nil
}

func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	x.s.note(&x.s.commands, "MAIL "+from)
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.note(&x.s.commands, "RCPT "+to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	x.s.note(&x.s.commands, "DATA")
	_, err := io.Copy(io.Discard, r)
	return err
}

func (x *smtpSession) Reset()        {}
func (x *smtpSession) Logout() error { return nil }
