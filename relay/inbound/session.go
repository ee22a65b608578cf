package inbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

// maxAuthFailures is how many failed AUTH attempts a connection gets before it is closed: enough for a typo,
// too few for guessing (each attempt costs a bcrypt comparison).
const maxAuthFailures = 3

// Inbound replies of this package beyond the named ones in smtpstatus.
var (
	needsUTF8   = smtpstatus.New(553, smtpstatus.Enhanced{5, 6, 7}, "Non-ASCII address requires SMTPUTF8")
	tooManyAuth = smtpstatus.New(421, smtpstatus.Enhanced{4, 7, 0}, "Too many failed authentications, closing connection")
	authNoUsers = smtpstatus.New(502, smtpstatus.Enhanced{5, 5, 1}, "AUTH not available: no smtp.users configured")
	authUnknown = smtpstatus.New(504, smtpstatus.Enhanced{5, 5, 4}, "Unrecognized authentication type; use PLAIN or LOGIN")
	authDone    = smtpstatus.New(503, smtpstatus.Enhanced{5, 5, 1}, "Already authenticated")
	nestedMail  = smtpstatus.New(503, smtpstatus.Enhanced{5, 5, 1}, "Error: nested MAIL command") // RFC 5321 4.1.4
	lineTooLong = smtpstatus.New(554, smtpstatus.Enhanced{5, 6, 0}, fmt.Sprintf("Error: a line of the message is longer than %d bytes", maxLineLength))
)

// withSession appends the session id to a reply so an admin can find the log lines a client complains about.
func withSession(st smtpstatus.Status, id string) smtpstatus.Status {
	return st.With("%s", withSessionText(st.Text, id))
}

// withSessionText appends the session id to a reply's text unless it is there already. go-smtp passes every
// error reply through it (smtp.Server.ErrorText), its own and ours alike.
func withSessionText(text, id string) string {
	suffix := " (session " + id + ")"
	if strings.HasSuffix(text, suffix) {
		return text
	}
	return text + suffix
}

type backend struct {
	srv *Server
	set *settings
}

// NewSession runs at each HELO/EHLO that starts a session (again after STARTTLS).
func (b *backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c := connOf(sc.Conn())
	if c == nil {
		return nil, smtpstatus.ToSMTP(errors.New("inbound: connection not accepted through Serve"))
	}
	s := &session{srv: b.srv, set: b.set, c: c, log: c.log, helo: sc.Hostname()}
	if st, ok := sc.TLSConnectionState(); ok {
		s.tls = &st
		c.tlsDone.Store(true)
		s.log.Info("tls", "client", c.RemoteAddr().String(), "version", tlsVersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite), "helo", s.helo)
		if b.srv.hooks.OnTLS != nil {
			b.srv.hooks.OnTLS(c.remote, tlsVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
		}
	} else {
		s.log.Info("helo", "helo", s.helo)
	}
	return s, nil
}

// session is one SMTP session (go-smtp starts a new one after STARTTLS). go-smtp calls Data on another
// goroutine for BDAT, concurrently with Reset, so the transaction is guarded by mu and Data works on a copy.
type session struct {
	srv  *Server
	set  *settings
	c    *conn
	log  *slog.Logger
	helo string
	tls  *tls.ConnectionState

	mu       sync.Mutex
	authUser string
	env      queue.Envelope
	mailOK   bool
	rcpts    []queue.Recipient
}

func (s *session) reply(st smtpstatus.Status) *smtp.SMTPError {
	return withSession(st, s.c.id).SMTPError()
}

// authAllowed: after STARTTLS, from loopback, or anywhere when auth_requires_tls = false (docs/configuration.md).
func (s *session) authAllowed() bool {
	return s.tls != nil || !s.set.authRequiresTLS || s.c.remote.IsLoopback()
}

// permitted: the client may relay, by address or by AUTH.
func (s *session) permitted() bool {
	return s.authUser != "" || s.set.allowedAddr(s.c.remote)
}

// AuthMechanisms is what EHLO advertises. The second entry smuggles the obsolete "AUTH=PLAIN LOGIN" line that
// old Microsoft clients look for: go-smtp joins the mechanisms into one "AUTH ..." line and splits reply
// text at newlines, so this yields "250-AUTH PLAIN LOGIN" and "250-AUTH=PLAIN LOGIN".
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() || s.set.users.empty() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login + "\nAUTH=" + sasl.Plain + " " + sasl.Login}
}

// Auth starts a PLAIN or LOGIN exchange; go-smtp upper-cases mech. Failures must be *smtp.SMTPError: go-smtp
// turns any other error into a temporary 454, which clients retry forever.
func (s *session) Auth(mech string) (sasl.Server, error) {
	s.mu.Lock()
	authed := s.authUser != ""
	s.mu.Unlock()
	switch {
	case authed:
		return nil, s.reply(authDone)
	case s.c.authFailures.Load() >= maxAuthFailures:
		s.c.closeAfterReply(io.EOF)
		return nil, s.reply(tooManyAuth)
	case !s.authAllowed():
		return nil, s.reply(smtpstatus.TLSRequiredForAuth.With("Must issue a STARTTLS command first"))
	case s.set.users.empty():
		return nil, s.reply(authNoUsers)
	}
	switch mech {
	case sasl.Plain:
		return saslGuard{s: s, mech: mech, Server: sasl.NewPlainServer(func(identity, user, pass string) error {
			if !plainIdentityOK(identity, user) {
				return s.authFailed(user, mech, "authorization identity differs from the user")
			}
			return s.authCheck(user, pass, mech)
		})}, nil
	case sasl.Login:
		return saslGuard{s: s, mech: mech, Server: &loginServer{check: func(user, pass string) error {
			return s.authCheck(user, pass, mech)
		}}}, nil
	}
	return nil, s.reply(authUnknown)
}

// saslGuard turns go-sasl's own errors (a malformed PLAIN response) into a counted 535: go-smtp would answer
// any error that is not an *smtp.SMTPError with a temporary 454.
type saslGuard struct {
	sasl.Server
	s    *session
	mech string
}

func (g saslGuard) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := g.Server.Next(response)
	if _, ok := err.(*smtp.SMTPError); err != nil && !ok {
		err = g.s.authFailed("", g.mech, "malformed response: "+err.Error())
	}
	return challenge, done, err
}

func (s *session) authCheck(user, pass, mech string) error {
	if !s.set.users.check(user, pass) {
		return s.authFailed(user, mech, "wrong user name or password")
	}
	s.mu.Lock()
	s.authUser = user
	s.mu.Unlock()
	s.log.Info("authenticated", "user", user, "mechanism", mech, "client", s.c.RemoteAddr().String())
	s.srv.authResult(s.c.remote, user, true)
	return nil
}

func (s *session) authFailed(user, mech, why string) error {
	n := s.c.authFailures.Add(1)
	s.log.Warn("AUTH failed", "user", user, "mechanism", mech, "client", s.c.RemoteAddr().String(), "reason", why, "failures", n)
	s.srv.refused(RefusedAuth)
	s.srv.authResult(s.c.remote, user, false)
	if n >= maxAuthFailures {
		// 535 for this attempt, then 421 and the close.
		s.c.closeAfterReply(s.reply(tooManyAuth))
	}
	return s.reply(smtpstatus.AuthFailed)
}

// Mail starts a transaction. Anyone may say MAIL (the relay decision is per recipient, as in Postfix); the null
// sender <> is taken from everyone, since Exchange relays its NDRs with it.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	nested := s.mailOK
	s.mu.Unlock()
	if nested {
		// go-smtp would start a new transaction over the open one; the client is out of step.
		return s.reply(nestedMail)
	}
	env := queue.Envelope{
		ClientAddr: s.c.RemoteAddr().String(),
		ClientHelo: s.helo,
		Session:    s.c.id,
	}
	if opts != nil {
		env.BodyType = string(opts.Body)
		env.SMTPUTF8 = opts.UTF8
		env.EnvID = opts.EnvelopeID
		env.Ret = string(opts.Return)
	}
	if from != "" {
		canon, err := checkMailbox(from, env.SMTPUTF8)
		switch {
		case errors.Is(err, errNeedsUTF8):
			return s.reply(needsUTF8)
		case err != nil:
			s.log.Info("bad sender address", "from", from, "err", err)
			return s.reply(smtpstatus.BadSender)
		}
		from = canon
	}
	env.From = from
	s.mu.Lock()
	env.AuthUser = s.authUser
	s.env, s.mailOK, s.rcpts = env, true, nil
	s.mu.Unlock()
	s.c.inTxn.Store(true)
	return nil
}

// Rcpt applies the relay rule to every recipient alike, whatever the address form: nothing is local.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	canon, err := checkMailbox(to, s.env.SMTPUTF8)
	switch {
	case errors.Is(err, errNeedsUTF8):
		return s.reply(needsUTF8)
	case err != nil:
		s.log.Info("bad recipient address", "to", to, "err", err)
		s.srv.refused(RefusedSyntax)
		return s.reply(smtpstatus.BadAddress)
	}
	if !s.permitted() {
		s.log.Info("relay denied", "to", "<"+canon+">", "from", "<"+s.env.From+">", "client", s.c.RemoteAddr().String(), "helo", s.helo)
		s.srv.refused(RefusedRelay)
		s.c.denied.Add(1)
		return s.reply(smtpstatus.RelayDenied.With("<%s>: Relay access denied", canon))
	}
	if max := s.set.maxRcpts; max > 0 && len(s.rcpts) >= max {
		s.srv.refused(RefusedRecipients)
		return s.reply(smtpstatus.TooManyRecipients.With("Error: too many recipients (limit %d per message)", max))
	}
	r := queue.Recipient{Addr: canon, State: queue.StateQueued}
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.env, s.mailOK, s.rcpts = queue.Envelope{}, false, nil
	s.mu.Unlock()
	s.c.inTxn.Store(false)
}

func (s *session) Logout() error { return nil }

// transaction copies the envelope for Data, which may outlive a Reset (BDAT).
func (s *session) transaction() (queue.Envelope, []queue.Recipient, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env, append([]queue.Recipient(nil), s.rcpts...), s.mailOK && len(s.rcpts) > 0
}
