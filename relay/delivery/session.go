package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// stage is the step of the SMTP dialogue an error happened at; classification depends on it (outcome.go).
type stage string

const (
	stDNS      stage = "dns"
	stConnect  stage = "connect"
	stGreeting stage = "greeting"
	stEHLO     stage = "ehlo"
	stTLS      stage = "starttls"
	stAuth     stage = "auth"
	stMail     stage = "mail"
	stRcpt     stage = "rcpt"
	stData     stage = "data"
	stQueue    stage = "queue" // reading our own stored body
	stAbort    stage = "abort" // shutdown
)

// stepError is a failure with the stage it happened at and the relay it happened with.
type stepError struct {
	Stage stage
	Relay string // "host[ip]:port" or "host" before an address was known
	Err   error
}

func (e *stepError) Error() string { return fmt.Sprintf("%s %s: %v", e.Stage, e.Relay, e.Err) }
func (e *stepError) Unwrap() error { return e.Err }

type tlsMode int

const (
	tlsOff           tlsMode = iota
	tlsOpportunistic         // STARTTLS when offered, unverified; plaintext when not offered
	tlsRequired              // STARTTLS must be offered and succeed
	tlsImplicit              // TLS from the first byte (port 465)
)

// dialSpec says how to open one session with one address.
type dialSpec struct {
	host    string // name for relay= and the TLS ServerName
	addr    string // "ip:port" (direct) or "host:port" (smart host)
	bind    string // source IP, "" for the kernel's choice
	helo    string
	tls     tlsMode
	verify  bool
	roots   *x509.CertPool
	timeout time.Duration
}

// session is one open SMTP connection, ready for MAIL.
type session struct {
	c       *smtp.Client
	raw     net.Conn
	wire    net.Conn // what go-smtp writes to (TLS or plain, with deadlines): the body goes here directly
	relay   string
	secure  bool
	used    int // transactions completed on it
	unwatch func() bool
}

func (ss *session) close(quit bool) {
	if quit {
		_ = ss.c.Quit() // best effort; the connection is closed below either way
	}
	_ = ss.raw.Close()
	ss.unwatch()
}

// relayName renders Postfix's relay=host[ip]:port.
func relayName(host string, addr net.Addr) string {
	h, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		return host
	}
	return fmt.Sprintf("%s[%s]:%s", host, h, p)
}

// open dials spec and speaks up to a ready EHLO (with STARTTLS when asked). On failure the connection is closed
// and the error is a *stepError.
func open(ctx context.Context, spec dialSpec) (*session, error) {
	// A host that does not answer the SYN is usually down or filtered: 30 s (Postfix's smtp_connect_timeout)
	// before the next MX, rather than the full I/O timeout.
	d := net.Dialer{Timeout: min(spec.timeout, 30*time.Second)}
	if spec.bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(spec.bind)}
	}
	raw, err := d.DialContext(ctx, "tcp", spec.addr)
	if err != nil {
		return nil, &stepError{Stage: stConnect, Relay: spec.host + "[" + spec.addr + "]", Err: err}
	}
	relay := relayName(spec.host, raw.RemoteAddr())
	// go-smtp has no context support: closing the socket is how a shutdown interrupts a session.
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

func handshake(ctx context.Context, raw net.Conn, relay string, spec dialSpec) (*session, error) {
	fail := func(st stage, err error) error { return &stepError{Stage: st, Relay: relay, Err: err} }
	var conn net.Conn = &deadlineConn{Conn: raw, timeout: spec.timeout}
	tcfg := &tls.Config{ServerName: spec.host, RootCAs: spec.roots, InsecureSkipVerify: !spec.verify}
	secure := false
	if spec.tls == tlsImplicit {
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fail(stTLS, err)
		}
		conn, secure = tc, true
	}
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fail(stGreeting, err)
	}
	ext, err := ehlo(tp, spec.helo)
	if err != nil {
		return nil, fail(stEHLO, err)
	}
	if !secure && (spec.tls == tlsOpportunistic || spec.tls == tlsRequired) {
		_, offered := ext["STARTTLS"]
		switch {
		case offered:
			id, err := tp.Cmd("STARTTLS")
			if err != nil {
				return nil, fail(stTLS, err)
			}
			tp.StartResponse(id)
			_, _, err = tp.ReadResponse(220)
			tp.EndResponse(id)
			if err != nil {
				var te *textproto.Error
				if !errors.As(err, &te) || spec.tls == tlsRequired {
					return nil, fail(stTLS, err)
				}
				// A refused STARTTLS leaves the session in plaintext (RFC 3207 4): go on without TLS.
				break
			}
			tc := tls.Client(conn, tcfg)
			// Handshake now instead of lazily at the next command, so a certificate failure is reported as one.
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fail(stTLS, err)
			}
			conn, secure = tc, true
		case spec.tls == tlsRequired:
			return nil, fail(stTLS, errors.New("the server does not offer STARTTLS"))
		}
	}
	c := smtp.NewClient(&greetedConn{Conn: conn, pending: []byte("220 " + spec.host + " ESMTP\r\n")})
	c.CommandTimeout = spec.timeout
	c.SubmissionTimeout = 2 * spec.timeout
	if err := c.Hello(spec.helo); err != nil {
		return nil, fail(stEHLO, err)
	}
	return &session{c: c, raw: raw, wire: conn, relay: relay, secure: secure}, nil
}

// ehlo sends EHLO (HELO when EHLO is not understood) and returns the advertised extensions by keyword.
func ehlo(tp *textproto.Conn, name string) (map[string]string, error) {
	code, msg, err := cmd(tp, 250, "EHLO %s", name)
	if err != nil {
		if code == 500 || code == 502 {
			if _, _, err := cmd(tp, 250, "HELO %s", name); err != nil {
				return nil, err
			}
			return map[string]string{}, nil
		}
		return nil, err
	}
	ext := map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, nil
}

func cmd(tp *textproto.Conn, expect int, format string, args ...any) (int, string, error) {
	id, err := tp.Cmd(format, args...)
	if err != nil {
		return 0, "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	return tp.ReadResponse(expect)
}
