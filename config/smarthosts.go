package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Smarthost is one [[smarthosts]] entry: an upstream relay, where it is, how ptrelay logs in, and what the
// provider allows it to send. The list is in order of preference.
type Smarthost struct {
	Name          string        `toml:"name"`
	Address       string        `toml:"address"`
	TLS           SmarthostTLS  `toml:"tls"`
	TLSVerify     bool          `toml:"tls_verify"`
	Auth          SmarthostAuth `toml:"auth"`
	Username      string        `toml:"username"` // for xoauth2: the mailbox the token may send as
	PasswordFile  string        `toml:"password_file"`
	TLSClientCert string        `toml:"tls_client_cert"`
	TLSClientKey  string        `toml:"tls_client_key"`
	// MaxConnections bounds the sessions to this host (Microsoft 365: 3 per mailbox).
	MaxConnections int `toml:"max_connections"`
	// MaxRecipients is the most recipients per transaction; more are split into several transactions.
	MaxRecipients int         `toml:"max_recipients"`
	MessageRate   []string    `toml:"message_rate"`   // "30/min", ...: sliding windows, all must hold
	RecipientRate []string    `toml:"recipient_rate"` // "10000/day", ...
	WhenLimited   WhenLimited `toml:"when_limited"`
	// Senders are the envelope-sender domains this host may carry; empty: any.
	Senders         []string `toml:"senders"`
	DKIMSafeHeaders AutoBool `toml:"dkim_safe_headers"`
	OAuth2          *OAuth2  `toml:"oauth2,omitempty"` // with auth = "xoauth2"
}

// OAuth2 is [smarthosts.oauth2]: where the access tokens of an XOAUTH2 login come from.
type OAuth2 struct {
	Provider            OAuthProvider `toml:"provider"`
	Tenant              string        `toml:"tenant"` // microsoft: the tenant ID or a verified domain
	ClientID            string        `toml:"client_id"`
	ClientSecretFile    string        `toml:"client_secret_file"`    // microsoft, generic
	ClientSecretExpires string        `toml:"client_secret_expires"` // "2027-05-01": alert before
	ServiceAccountFile  string        `toml:"service_account_file"`  // google: the JSON key
	TokenURL            string        `toml:"token_url"`             // generic; overrides the provider's
	Scopes              []string      `toml:"scopes"`                // empty: the provider's
}

// Per-entry defaults of [[smarthosts]] (an array of tables cannot carry them in default.toml): Parse fills every
// key the file leaves out, NewSmarthost builds an entry with all of them.
const (
	DefaultSmarthostMaxConnections = 5
	DefaultSmarthostMaxRecipients  = 100
)

// NewSmarthost returns an entry with the documented defaults, for configurations built in code (tests).
func NewSmarthost(name, address string) Smarthost {
	return Smarthost{Name: name, Address: address, TLS: SmarthostSTARTTLS, TLSVerify: true, Auth: AuthAuto,
		MaxConnections: DefaultSmarthostMaxConnections, MaxRecipients: DefaultSmarthostMaxRecipients,
		WhenLimited: LimitedNext, DKIMSafeHeaders: AutoBoolAuto}
}

// fillSmarthostDefaults gives every [[smarthosts]] entry the default of each key its table leaves out. set
// reports whether the file wrote a key ("smarthosts[1].tls_verify"): only a missing key gets its default, so
// that tls_verify = false and max_connections = 0 stay what the admin wrote (the latter for Validate to refuse).
func (c *Config) fillSmarthostDefaults(set func(key string) bool) {
	for i := range c.Smarthosts {
		s := &c.Smarthosts[i]
		d := NewSmarthost(s.Name, s.Address)
		k := func(name string) bool { return set(idx("smarthosts", i) + "." + name) }
		if !k("tls") {
			s.TLS = d.TLS
		}
		if !k("tls_verify") {
			s.TLSVerify = d.TLSVerify
		}
		if !k("auth") {
			s.Auth = d.Auth
		}
		if !k("max_connections") {
			s.MaxConnections = d.MaxConnections
		}
		if !k("max_recipients") {
			s.MaxRecipients = d.MaxRecipients
		}
		if !k("when_limited") {
			s.WhenLimited = d.WhenLimited
		}
		if !k("dkim_safe_headers") {
			s.DKIMSafeHeaders = d.DKIMSafeHeaders
		}
	}
}

// HasSmarthosts reports whether at least one smart host is configured.
func (c *Config) HasSmarthosts() bool { return len(c.Smarthosts) > 0 }

// SmarthostNamed returns the entry called name, or nil.
func (c *Config) SmarthostNamed(name string) *Smarthost {
	for i := range c.Smarthosts {
		if c.Smarthosts[i].Name == name {
			return &c.Smarthosts[i]
		}
	}
	return nil
}

// Host returns the host part of Address (the name looked up and verified in the certificate).
func (s *Smarthost) Host() string {
	if h, _, err := net.SplitHostPort(s.Address); err == nil {
		return h
	}
	return s.Address
}

// LogsIn reports whether ptrelay logs in to this host: a username with auth other than "none".
func (s *Smarthost) LogsIn() bool { return s.Username != "" && s.Auth != AuthNone }

// UsesPassword reports whether the login takes a password (every mechanism but xoauth2).
func (s *Smarthost) UsesPassword() bool { return s.LogsIn() && s.Auth != AuthXOAUTH2 }

// DKIMSafe resolves dkim_safe_headers: "auto" is on for Amazon SES (host names under amazonaws.com or
// amazonses.com), which rewrites Message-ID and so breaks a signature that covers it.
func (s *Smarthost) DKIMSafe() bool {
	switch s.DKIMSafeHeaders {
	case AutoBoolTrue:
		return true
	case AutoBoolFalse:
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(s.Host(), "."))
	for _, d := range []string{"amazonaws.com", "amazonses.com"} {
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}

// credentialsDir is systemd's $CREDENTIALS_DIRECTORY, "" outside a unit with LoadCredential=.
func credentialsDir() string { return os.Getenv("CREDENTIALS_DIRECTORY") }

// PasswordCredential is the systemd credential a host's password is read from when password_file is empty:
// the host's name ("LoadCredential=isp:/etc/ptrelay/isp.pass"). The shipped unit hands over "smarthost".
func (s *Smarthost) PasswordCredential() string { return s.Name }

// SecretCredential is the systemd credential of the OAuth client secret when client_secret_file is empty:
// "<name>-secret".
func (s *Smarthost) SecretCredential() string { return s.Name + "-secret" }

// PasswordPath returns where the password is read from: password_file, else $CREDENTIALS_DIRECTORY/<name>;
// "" when neither is there.
func (s *Smarthost) PasswordPath() string {
	if s.PasswordFile != "" {
		return s.PasswordFile
	}
	if d := credentialsDir(); d != "" {
		return filepath.Join(d, s.PasswordCredential())
	}
	return ""
}

// PasswordSource says, for an admin, where the password comes from: password_file, or the file the unit hands
// over with LoadCredential= (systemd copies it at start; $CREDENTIALS_DIRECTORY is that copy, not a file anyone
// edits).
func (s *Smarthost) PasswordSource() string {
	if s.PasswordFile != "" {
		return s.PasswordFile
	}
	where := "the file named by LoadCredential=" + s.PasswordCredential() + ":FILE in ptrelay's unit"
	if s.PasswordCredential() == credentialName {
		where += " (" + PackagedCredentialFile + " in the shipped unit"
	} else {
		where += " (add it with systemctl edit ptrelay"
	}
	return where + "; systemd copies it at start, so restart ptrelay after editing it)"
}

// Password reads the host's password (see PasswordPath). One trailing newline ("\n" or "\r\n") is removed,
// since editors and `echo` add one; any other whitespace is part of the password. An empty password is an
// error.
func (s *Smarthost) Password() (string, error) {
	p := s.PasswordPath()
	if p == "" {
		return "", fmt.Errorf("smart host %s: no password configured: set password_file, or pass the password "+
			"with systemd's LoadCredential=%s:FILE", s.Name, s.PasswordCredential())
	}
	return readSecret(p, "smart host "+s.Name+": the password file")
}

// ClientSecretPath returns where the OAuth client secret is read from: client_secret_file, else
// $CREDENTIALS_DIRECTORY/<name>-secret; "" when neither is there.
func (s *Smarthost) ClientSecretPath() string {
	if s.OAuth2 != nil && s.OAuth2.ClientSecretFile != "" {
		return s.OAuth2.ClientSecretFile
	}
	if d := credentialsDir(); d != "" {
		return filepath.Join(d, s.SecretCredential())
	}
	return ""
}

// ClientSecret reads the OAuth client secret (see ClientSecretPath), like Password.
func (s *Smarthost) ClientSecret() (string, error) {
	p := s.ClientSecretPath()
	if p == "" {
		return "", fmt.Errorf("smart host %s: no client secret configured: set oauth2.client_secret_file, or pass "+
			"it with systemd's LoadCredential=%s:FILE", s.Name, s.SecretCredential())
	}
	return readSecret(p, "smart host "+s.Name+": the client secret file")
}

// readSecret reads a one-line secret file, dropping one trailing newline.
func readSecret(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	v := string(b)
	if strings.HasSuffix(v, "\r\n") {
		v = v[:len(v)-2]
	} else if strings.HasSuffix(v, "\n") {
		v = v[:len(v)-1]
	}
	if v == "" {
		return "", fmt.Errorf("%s %s is empty: write the secret into it", what, path)
	}
	return v, nil
}

// SecretExpires parses client_secret_expires ("2027-05-01", the end of that day UTC); zero when not set.
func (o *OAuth2) SecretExpires() (time.Time, error) {
	if o == nil || o.ClientSecretExpires == "" {
		return time.Time{}, nil
	}
	d, err := time.Parse(time.DateOnly, o.ClientSecretExpires)
	if err != nil {
		return time.Time{}, errors.New("is not a date: write it as \"2027-05-01\" (the Expires column of the secret)")
	}
	return d.Add(24*time.Hour - time.Second), nil
}

// Rate is one sending budget of a smart host: at most N within any window of Per (a sliding window).
type Rate struct {
	N   int
	Per time.Duration
}

// rateUnits are the windows a rate may name.
var rateUnits = map[string]time.Duration{"s": time.Second, "min": time.Minute, "h": time.Hour, "day": 24 * time.Hour}

// ParseRate reads "30/min", "10000/day": a whole number, a slash and one of s, min, h, day.
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	per, known := rateUnits[strings.TrimSpace(unit)]
	v, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || !known || err != nil || v < 1 {
		return Rate{}, fmt.Errorf("%q is not a rate: write a number, a slash and s, min, h or day, e.g. \"30/min\" or \"10000/day\"", s)
	}
	return Rate{N: v, Per: per}, nil
}

// String renders the rate as written: "30/min".
func (r Rate) String() string {
	for u, d := range rateUnits {
		if d == r.Per {
			return strconv.Itoa(r.N) + "/" + u
		}
	}
	return strconv.Itoa(r.N) + "/" + r.Per.String()
}

// Rates parses a list of rates, leaving out what Validate refuses.
func Rates(list []string) []Rate {
	var out []Rate
	for _, s := range list {
		if r, err := ParseRate(s); err == nil {
			out = append(out, r)
		}
	}
	return out
}
