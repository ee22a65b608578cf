package smtpclient

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// AuthMech is the SASL mechanism a session logs in with.
type AuthMech string

const (
	AuthAuto    AuthMech = ""        // PLAIN when the server offers it (one round trip), else LOGIN
	AuthPlain   AuthMech = "plain"   // RFC 4616
	AuthLogin   AuthMech = "login"   // the mechanism Exchange and Office 365 clients use
	AuthXOAUTH2 AuthMech = "xoauth2" // an OAuth2 bearer token (Microsoft 365, Google); Password is the token
)

// Credentials log a session in.
type Credentials struct {
	Mech     AuthMech
	Username string
	// Password is the password, or with AuthXOAUTH2 the access token.
	Password string
	// AllowPlaintext lets the credentials cross a session without TLS. Only for a server the admin placed on
	// this machine or the LAN on purpose (a smart host's tls = "none").
	AllowPlaintext bool
}

// ErrPlaintextAuth: the session is not encrypted and the credentials may not cross it.
var ErrPlaintextAuth = errors.New("refusing to send credentials without TLS")

// AuthNotOfferedError: the server does not offer the mechanism asked for (or, with AuthAuto, neither PLAIN nor
// LOGIN).
type AuthNotOfferedError struct {
	Mech    AuthMech
	Offered string // the server's AUTH parameters, "" when it advertised no AUTH at all
}

func (e *AuthNotOfferedError) Error() string {
	want := "AUTH PLAIN or LOGIN"
	if e.Mech == AuthXOAUTH2 {
		want = "AUTH XOAUTH2"
	} else if e.Mech != AuthAuto {
		want = "AUTH " + strings.ToUpper(string(e.Mech))
	}
	if e.Offered == "" {
		return "the server offers no AUTH here, so not " + want
	}
	return fmt.Sprintf("the server does not offer %s (offered: %s)", want, e.Offered)
}

// Auth logs the session in with c. A refused login is a reply error (smtpstatus.FromError); ErrPlaintextAuth and
// *AuthNotOfferedError mean nothing was sent.
func (s *Session) Auth(c Credentials) error {
	if !s.secure && !c.AllowPlaintext {
		return ErrPlaintextAuth
	}
	_, offered := s.c.Extension("AUTH")
	offered = strings.TrimSpace(offered)
	var client sasl.Client
	switch {
	case c.Mech == AuthXOAUTH2:
		if !s.c.SupportsAuth(mechXOAUTH2) {
			return &AuthNotOfferedError{Mech: c.Mech, Offered: offered}
		}
		client = xoauth2Client{user: c.Username, token: c.Password}
	case c.Mech != AuthLogin && s.c.SupportsAuth(sasl.Plain):
		client = sasl.NewPlainClient("", c.Username, c.Password)
	case c.Mech != AuthPlain && s.c.SupportsAuth(sasl.Login):
		client = sasl.NewLoginClient(c.Username, c.Password)
	default:
		return &AuthNotOfferedError{Mech: c.Mech, Offered: offered}
	}
	return s.c.Auth(client)
}
