// Package smtpclient is ptrelay's outbound SMTP client: it opens one session with one address (greeting, EHLO,
// STARTTLS or implicit TLS, the post-TLS EHLO), logs in, and sends a message through a dot-stuffer. Delivery
// uses it for every MX host and smart host, and `ptrelay send` for its test message.
//
// It speaks and reports; it does not decide. Which address to try, what a reply means for a recipient and
// whether to retry belong to relay/delivery; replies are parsed by relay/smtpstatus. Errors from Dial are
// *StepError, naming the step that failed; replies the server gave are errors smtpstatus.FromError reads.
//
// One session sends exactly one EHLO on a plaintext connection, and one more after STARTTLS, as RFC 3207 4.2
// requires. go-smtp's client sends the EHLOs (with ptrelay's name, never its default "localhost"); this package
// sends STARTTLS itself, since go-smtp v0.25.1 can only start TLS through NewClientStartTLS, whose EHLO says
// "localhost".
package smtpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
)

// Stage is the step of the dialogue an error happened at.
type Stage string

const (
	StageConnect  Stage = "connect"
	StageGreeting Stage = "greeting"
	StageEHLO     Stage = "ehlo"
	StageTLS      Stage = "starttls" // STARTTLS refused, or the TLS handshake or certificate check failed
)

// StepError is a failure while opening a session: the stage and the relay it happened with.
type StepError struct {
	Stage Stage
	Relay string // "host[ip]:port", or "host[addr]" when the connection did not open
	Err   error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s %s: %v", e.Stage, e.Relay, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// ErrNoSTARTTLS: TLS is required and the server does not offer STARTTLS.
var ErrNoSTARTTLS = errors.New("the server does not offer STARTTLS")

// Spec says how to open one session with one address.
type Spec struct {
	Host string // the server's name: relay= in logs, and the TLS name unless TLS.ServerName says otherwise
	// Addr is the address to dial, "ip:port". A name here would be looked up by the system's resolver, which the
	// configured dns.resolvers do not reach: callers resolve names first (dnscheck.ResolveHost).
	Addr string
	Bind string // source IP; "" leaves the choice to the kernel
	Helo string // the EHLO name: ptrelay's hostname
	TLS  TLSPolicy
	// Timeout bounds every read and write and each reply wait (RFC 5321 4.5.3.2 suggests 5 minutes); the
	// connection attempt gets at most 30 s of it (Postfix's smtp_connect_timeout).
	Timeout time.Duration
}

// Session is one open SMTP connection, greeted, past EHLO (and STARTTLS), ready for AUTH or MAIL.
type Session struct {
	c       *smtp.Client
	raw     net.Conn
	wire    net.Conn // what go-smtp writes to (TLS or plain, with deadlines): the body goes here directly
	relay   string
	secure  bool
	state   tls.ConnectionState // of the TLS session, when secure
	unwatch func() bool
}

// Relay is Postfix's relay=host[ip]:port of the session.
func (s *Session) Relay() string { return s.relay }

// Secure reports a TLS session (implicit TLS or a successful STARTTLS).
func (s *Session) Secure() bool { return s.secure }

// TLSState returns the TLS session's state (version, certificates); ok is false for a plaintext session.
func (s *Session) TLSState() (state tls.ConnectionState, ok bool) { return s.state, s.secure }

// Extension reports whether the server advertised an EHLO keyword (after TLS, the post-TLS list) and its
// parameters.
func (s *Session) Extension(name string) (bool, string) { return s.c.Extension(name) }

// Close ends the session: QUIT first when quit is set (best effort), then the connection is closed.
func (s *Session) Close(quit bool) {
	if quit {
		_ = s.c.Quit()
	}
	_ = s.raw.Close()
	s.unwatch()
}

// relayName renders Postfix's relay=host[ip]:port.
func relayName(host string, addr net.Addr) string {
	h, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		return host
	}
	return fmt.Sprintf("%s[%s]:%s", host, h, p)
}

// Dial connects to spec.Addr and speaks up to a session ready for MAIL: greeting, EHLO, and TLS as spec.TLS
// says. Cancelling ctx closes the connection, which interrupts whatever the session is doing (go-smtp has no
// context support). On failure the connection is closed and the error is a *StepError.
func Dial(ctx context.Context, spec Spec) (*Session, error) {
	d := net.Dialer{Timeout: min(spec.Timeout, 30*time.Second)}
	if spec.Bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(spec.Bind)}
	}
	raw, err := d.DialContext(ctx, "tcp", spec.Addr)
	if err != nil {
		return nil, &StepError{Stage: StageConnect, Relay: spec.Host + "[" + spec.Addr + "]", Err: err}
	}
	relay := relayName(spec.Host, raw.RemoteAddr())
	unwatch := context.AfterFunc(ctx, func() { raw.Close() })
	ss, err := handshake(ctx, raw, relay, spec)
	if err != nil {
		raw.Close()
		unwatch()
		return nil, err
	}
	ss.unwatch = unwatch
	return ss, nil
}

func handshake(ctx context.Context, raw net.Conn, relay string, spec Spec) (*Session, error) {
	fail := func(st Stage, err error) error { return &StepError{Stage: st, Relay: relay, Err: err} }
	var conn net.Conn = &deadlineConn{Conn: raw, timeout: spec.Timeout}
	tcfg := spec.TLS.config(spec.Host)
	secure := false
	var state tls.ConnectionState
	if spec.TLS.Mode == TLSImplicit {
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fail(StageTLS, err)
		}
		conn, secure, state = tc, true, tc.ConnectionState()
	}
	// The greeting and the first EHLO (HELO when EHLO is refused) by go-smtp.
	watch := &writeWatch{Conn: conn}
	c := newClient(watch, spec)
	if err := c.Hello(spec.Helo); err != nil {
		if !watch.wrote.Load() {
			return nil, fail(StageGreeting, err)
		}
		return nil, fail(StageEHLO, err)
	}
	if !secure && (spec.TLS.Mode == TLSOpportunistic || spec.TLS.Mode == TLSRequired) {
		offered, _ := c.Extension("STARTTLS")
		switch {
		case offered:
			err := startTLS(conn)
			if err != nil {
				var te *textproto.Error
				if !errors.As(err, &te) || spec.TLS.Mode == TLSRequired {
					return nil, fail(StageTLS, err)
				}
				// A refused STARTTLS leaves the session as it was (RFC 3207 4): go on in plaintext.
				break
			}
			tc := tls.Client(conn, tcfg)
			// Handshake now instead of lazily at the next command, so a certificate failure is reported as one.
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fail(StageTLS, err)
			}
			conn, secure, state = tc, true, tc.ConnectionState()
			// The session starts over (RFC 3207 4.2): a new client, and the EHLO it sends is the second and last.
			c = newClient(&greetedConn{Conn: tc, pending: []byte("220 " + spec.Host + " ESMTP\r\n")}, spec)
			if err := c.Hello(spec.Helo); err != nil {
				return nil, fail(StageEHLO, err)
			}
		case spec.TLS.Mode == TLSRequired:
			return nil, fail(StageTLS, ErrNoSTARTTLS)
		}
	}
	return &Session{c: c, raw: raw, wire: conn, relay: relay, secure: secure, state: state}, nil
}

func newClient(conn net.Conn, spec Spec) *smtp.Client {
	c := smtp.NewClient(conn)
	c.CommandTimeout = spec.Timeout
	c.SubmissionTimeout = 2 * spec.Timeout
	return c
}

// startTLS sends STARTTLS and reads its reply on conn, below go-smtp's client (see command). Whatever a server
// sends after its 220 and before the handshake is never read as part of the encrypted session (the STARTTLS
// command injection of CVE-2011-0411 cannot reach us).
func startTLS(conn net.Conn) error { return command(conn, "STARTTLS", 220) }

// command sends one command and reads its reply on conn, below go-smtp's client, for the commands whose go-smtp
// form does more than send them: STARTTLS exists only inside NewClientStartTLS, and Client.Reset makes the next
// command send EHLO again. The client's reader holds nothing unread: a server sends nothing after a reply until
// the next command. A refusal is a *textproto.Error (smtpstatus.FromError reads it).
func command(conn net.Conn, line string, expect int) error {
	tp := textproto.NewConn(conn)
	id, err := tp.Cmd("%s", line)
	if err != nil {
		return err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	_, _, err = tp.ReadResponse(expect)
	return err
}
