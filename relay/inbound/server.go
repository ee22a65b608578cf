// Package inbound is ptrelay's SMTP server for the internal senders (Exchange, NAS, scanners, applications):
// access control (allowed networks or AUTH PLAIN/LOGIN), limits, STARTTLS (with an opt-in legacy profile for old
// Windows), and the data path that streams a message through the bare CR/LF filter and the header completer into
// the queue, answering 250 only after the queue committed it. It is built on go-smtp's server and works around
// go-smtp's traps: its read deadline is set per command, not per read, so a slow DATA body times out
// (per-read idle deadlines, conn.go); a plain error from an authenticator becomes 454 instead of 535; Data's
// error mapping uses a type assertion, so a wrapped *smtp.SMTPError becomes 554. It knows nothing of delivery,
// routing or DNS: what it accepts ends in queue.Store.
//
// Decisions a reader should know:
//   - Relay access is decided per recipient (as Postfix does): a client inside smtp.allowed_networks, or one
//     that authenticated, may relay; every other RCPT gets 554 5.7.1. No address form is local.
//   - DSN (RFC 3461) is advertised, because Exchange sends its parameters when it is: RET and ENVID are kept in
//     queue.Envelope, NOTIFY and ORCPT in each queue.Recipient, for the delivery side to honour and pass on.
//   - Every error reply names the session, go-smtp's own included (smtp.Server.ErrorText); go-smtp's success
//     replies (MAIL, RCPT, 354, BDAT "Continue") do not, and the final 250 names the queue ID and the session.
//   - ptrelay builds on a patched copy of go-smtp (third_party/go-smtp, see its README): DATA read a line at a
//     time, over-long command lines answered 500 5.5.2 without closing, a connection's own 421 as the last
//     reply (conn.timeoutErr), and ErrorText.
package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

// DefaultIdleTimeout bounds how long a client may stay silent, in a command or in the middle of a message
// (Postfix's smtpd_timeout is 300s).
const DefaultIdleTimeout = 5 * time.Minute

// maxLineLength bounds a line: a command line (go-smtp answers a longer one 500 5.5.2 and reads on) and a line of
// a message, DATA or BDAT alike (the Filter refuses the message with 554 5.6.0). go-smtp's default of 2000 would
// turn away the mail of applications that write HTML on one line, which Postfix relays; 64 KiB keeps them
// working while a command line still cannot grow without bound.
const maxLineLength = 64 << 10

// Reasons passed to Hooks.OnRefused, stable for metrics labels.
const (
	RefusedRelay       = "relay_denied"
	RefusedSize        = "too_big"
	RefusedRecipients  = "too_many_recipients"
	RefusedBareNewline = "bare_newline"
	RefusedAuth        = "auth_failed"
	RefusedConnections = "too_many_connections"
	RefusedStorage     = "storage"
	RefusedSyntax      = "bad_address"
	RefusedTLS         = "tls_handshake"
	RefusedIdle        = "idle_timeout"
)

// Hooks let the daemon observe the server (metrics) without the server knowing about metrics. Every field
// may be nil. They are called synchronously from session goroutines: keep them quick.
type Hooks struct {
	OnSession  func(delta int)             // +1 when a connection is accepted, -1 when it ends
	OnAccepted func(id string, size int64) // a message was committed to the queue
	OnRefused  func(reason string)         // one of the Refused* reasons
	// OnTLS reports each completed STARTTLS: which client negotiated which version ("TLS1.0") and suite, so
	// status pages can show who still needs tls_legacy.
	OnTLS func(client netip.Addr, version, cipher string)
	// OnAuth reports each AUTH outcome: the client, the user name it gave, and whether it was accepted (alerts
	// on repeated failures from one client).
	OnAuth func(client netip.Addr, user string, ok bool)
}

// Server is the inbound SMTP server. It serves any number of listeners (Serve once per listener).
//
// Each connection gets its own go-smtp server value, built from the settings current at accept time. That
// gives reloads their meaning (sessions in flight keep their settings, new ones get the new settings) without
// mutating a go-smtp server while it runs, and it gives each connection its own Debug tap: the one place where
// the decrypted input is visible, which the bare CR check needs (see tap.go).
type Server struct {
	log   *slog.Logger
	store store
	hooks Hooks
	idle  time.Duration

	mu        sync.Mutex
	set       *settings
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	drained   chan struct{} // closed when closing and no connection is left
	inData    int           // Data calls running (they may commit after their connection closed)
	dataIdle  chan struct{} // closed when inData drops to 0, while Shutdown waits for that
}

// New builds a server from cfg; nothing is served until Serve. Errors name the setting to fix.
func New(cfg *config.Config, st *queue.Store, log *slog.Logger, hooks Hooks) (*Server, error) {
	return newServer(cfg, queueStore{st}, log, hooks)
}

func newServer(cfg *config.Config, st store, log *slog.Logger, hooks Hooks) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		log:       log,
		store:     st,
		hooks:     hooks,
		idle:      DefaultIdleTimeout,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	set, err := newSettings(cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.set = set
	return s, nil
}

// Reload applies cfg to connections accepted from now on: allowed networks, users, limits, bare_newlines and
// the TLS certificate. Sessions in flight keep their settings. On error nothing changes.
func (s *Server) Reload(cfg *config.Config) error {
	set, err := newSettings(cfg, s.log)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errors.New("inbound: server is shutting down")
	}
	s.set = set
	s.log.Info("inbound configuration reloaded; new sessions use it")
	return nil
}

// smtpServer builds the go-smtp server for one connection.
func (s *Server) smtpServer(set *settings, c *conn) *smtp.Server {
	srv := smtp.NewServer(&backend{srv: s, set: set})
	srv.Domain = set.hostname
	srv.MaxMessageBytes = set.maxSize
	// Recipients are counted by the session, so the 452 names the session and reaches the hooks.
	srv.MaxRecipients = 0
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	// go-smtp offers AUTH only on TLS unless this is set; the session decides per connection instead
	// (AuthMechanisms returns nothing where AUTH is not allowed), because loopback clients may AUTH in clear.
	srv.AllowInsecureAuth = true
	srv.WriteTimeout = time.Minute
	srv.MaxLineLength = maxLineLength
	srv.ErrorLog = slogPrinter{c.log}
	srv.ErrorText = func(_ *smtp.Conn, _ int, _ smtp.EnhancedCode, text string) string {
		return withSessionText(text, c.id)
	}
	srv.Debug = c.tap
	if set.tls != nil {
		srv.TLSConfig = set.smtpTLS
	}
	return srv
}

// perConnTLS wraps base so that each handshake is tied to its connection: the ClientHello is kept for the
// failure log and success is recorded (go-smtp discards the handshake error).
func perConnTLS(base *tls.Config) *tls.Config {
	return &tls.Config{
		Certificates: base.Certificates, // go-smtp only checks TLSConfig != nil; the real config comes below
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c := connOf(hello.Conn)
			if c == nil {
				return base, nil
			}
			c.hello.Store(hello)
			hint := handshakeHint(hello, base)
			c.helloHint.Store(&hint)
			tc := base.Clone()
			tc.VerifyConnection = func(tls.ConnectionState) error {
				c.tlsDone.Store(true)
				return nil
			}
			return tc, nil
		},
	}
}

// Serve accepts connections on l until Shutdown (then it returns nil) or until l fails.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "retry_in", delay.String())
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.accept(nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// accept admits nc with the current settings, or refuses it with 421 when max_connections are in use.
func (s *Server) accept(nc net.Conn) {
	remote := netip.Addr{}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		remote = ap.Addr().Unmap()
	}
	id := newSessionID()
	s.mu.Lock()
	set := s.set
	if s.closing {
		s.mu.Unlock()
		go refuse(nc, smtpstatus.ShuttingDown, id)
		return
	}
	if max := set.maxConns; max > 0 && len(s.conns) >= max {
		s.mu.Unlock()
		s.log.Warn("connection refused: smtp.max_connections reached", "session", id, "client", nc.RemoteAddr().String(), "max_connections", max)
		s.refused(RefusedConnections)
		go refuse(nc, smtpstatus.TooManyConnections, id)
		return
	}
	c := &conn{Conn: nc, srv: s, id: id, remote: remote, idle: s.idle, log: s.log.With("session", id)}
	c.tap = &tap{c: c}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if s.hooks.OnSession != nil {
		s.hooks.OnSession(1)
	}
	c.log.Info("connect", "client", nc.RemoteAddr().String(), "local", nc.LocalAddr().String())
	srv := s.smtpServer(set, c)
	go func() { _ = srv.Serve(newOneConn(c)) }() // returns at once after starting the session's goroutine
}

// dataStarted and dataDone count Data calls, so Shutdown can let a commit in progress finish before the
// caller closes the queue. (A WaitGroup would forbid a Data starting while Shutdown already waits.)
func (s *Server) dataStarted() {
	s.mu.Lock()
	s.inData++
	s.mu.Unlock()
}

func (s *Server) dataDone() {
	s.mu.Lock()
	s.inData--
	if s.inData == 0 && s.dataIdle != nil {
		close(s.dataIdle)
		s.dataIdle = nil
	}
	s.mu.Unlock()
}

// commitGrace bounds how long Shutdown waits, after closing the sessions, for commits already running.
const commitGrace = 10 * time.Second

func (s *Server) waitData() {
	s.mu.Lock()
	if s.inData == 0 {
		s.mu.Unlock()
		return
	}
	if s.dataIdle == nil {
		s.dataIdle = make(chan struct{})
	}
	ch := s.dataIdle
	s.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(commitGrace):
		s.log.Warn("shutdown: a message commit is still running; closing anyway")
	}
}

// refuse answers a connection we will not serve and closes it, without waiting on a slow client for long.
func refuse(nc net.Conn, st smtpstatus.Status, id string) {
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(nc, withSession(st, id).String()+"\r\n")
	_ = nc.Close()
}

func (s *Server) connClosed(c *conn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	if s.closing && len(s.conns) == 0 && s.drained != nil {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
	if ok {
		c.log.Info("disconnect", "client", c.RemoteAddr().String(), "queued", c.queued.Load(), "relay_denied", c.denied.Load(), "auth_failures", c.authFailures.Load())
		if s.hooks.OnSession != nil {
			s.hooks.OnSession(-1)
		}
	}
}

// Shutdown stops accepting and lets mail transactions in flight finish until ctx is done; a connection
// between transactions is closed at once with 421 (go-smtp's timeout reply), so an idle connector does not
// hold a restart for the whole bound. At ctx's end whatever is left is closed (those clients keep their mail
// and retry: nothing unacknowledged is lost), and Shutdown returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("inbound: already shut down")
	}
	s.closing = true
	s.drained = make(chan struct{})
	if len(s.conns) == 0 {
		close(s.drained)
	}
	for l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		c.draining.Store(true)
		c.interruptIfDraining()
	}
	s.mu.Unlock()

	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Conn.Close()
		}
		s.mu.Unlock()
	}
	// A message being committed when its connection closed finishes before the caller closes the queue.
	s.waitData()
	return err
}

func (s *Server) authResult(client netip.Addr, user string, ok bool) {
	if s.hooks.OnAuth != nil {
		s.hooks.OnAuth(client, user, ok)
	}
}

func (s *Server) refused(reason string) {
	if s.hooks.OnRefused != nil {
		s.hooks.OnRefused(reason)
	}
}

// slogPrinter receives go-smtp's internal error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Warn(fmt.Sprintf(format, v...), "from", "go-smtp")
}
func (p slogPrinter) Println(v ...any) {
	msg := fmt.Sprintln(v...)
	p.log.Warn(msg[:len(msg)-1], "from", "go-smtp") // without Sprintln's newline
}
