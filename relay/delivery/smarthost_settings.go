package delivery

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/relay/oauth"
	"ptrelay/relay/smtpclient"
)

// Smarthost is one smart host: where it is, how the connection is secured, how ptrelay logs in, and what its
// provider lets it send.
type Smarthost struct {
	Name    string // its name in the list: relay=NAME/host[ip]:port, routing's smarthost:NAME, status, metrics
	Address string // "host:port" as configured
	Host    string // Address without the port: resolved through the configured resolver, and the TLS name
	Port    string
	TLS     smtpclient.TLSMode
	Verify  bool // tls_verify: the certificate must chain to a trusted root and name Host
	// ClientCert reads tls_client_cert and tls_client_key when a session opens (nil: no client certificate),
	// so renewed files need no reload.
	ClientCert func() (*tls.Certificate, error)

	Auth     smtpclient.AuthMech // with Username: the mechanism (AuthAuto: PLAIN or LOGIN as offered)
	Username string              // "": no login
	// Password reads the password when a session logs in, so a changed password file needs no reload.
	Password func() (string, error)
	// PasswordSource says where the password comes from, for the fix sentence of a refused login.
	PasswordSource string
	// OAuth is where XOAUTH2 tokens come from (Auth == AuthXOAUTH2); the scheduler keeps one token source per
	// host across reloads while these options stay the same.
	OAuth *oauth.Options
	// SecretExpires is client_secret_expires (zero: not set), for the secret.expiring alert.
	SecretExpires time.Time

	MaxConnections int           // sessions to this host at once
	MaxRecipients  int           // per transaction; more are split
	MessageRate    []config.Rate // sliding windows; all must hold
	RecipientRate  []config.Rate
	Wait           bool     // when_limited = "wait": mail keeps to this host while it is limited
	Senders        []string // envelope-sender domains it may carry, lower-cased; empty: any
	// DKIMSafeHeaders: DKIM signatures for mail through this host leave Message-ID and Date out of h= (Amazon
	// SES rewrites them); dkim_safe_headers resolved ("auto": on for SES hosts).
	DKIMSafeHeaders bool
}

// FailoverSettings are [delivery]'s smart-host keys: after After host-level failures in a row a host is down
// for a pause that doubles from DownMin to DownMax, then one probe delivery decides.
type FailoverSettings struct {
	After            int
	DownMin, DownMax time.Duration
}

func newSmarthost(c *config.Smarthost) Smarthost {
	h := Smarthost{Name: c.Name, Address: c.Address, Host: c.Address, Verify: c.TLSVerify,
		MaxConnections: max(c.MaxConnections, 1), MaxRecipients: max(c.MaxRecipients, 1),
		MessageRate: config.Rates(c.MessageRate), RecipientRate: config.Rates(c.RecipientRate),
		Wait: c.WhenLimited == config.LimitedWait, DKIMSafeHeaders: c.DKIMSafe()}
	if host, port, err := net.SplitHostPort(c.Address); err == nil {
		h.Host, h.Port = host, port
	}
	switch c.TLS {
	case config.SmarthostNoTLS:
		h.TLS = smtpclient.TLSOff
	case config.SmarthostImplicit:
		h.TLS = smtpclient.TLSImplicit
	default:
		h.TLS = smtpclient.TLSRequired
	}
	if c.TLSClientCert != "" && c.TLSClientKey != "" {
		cert, key := c.TLSClientCert, c.TLSClientKey
		h.ClientCert = func() (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(cert, key)
			return &pair, err
		}
	}
	for _, d := range c.Senders {
		h.Senders = append(h.Senders, strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")), "."))
	}
	if !c.LogsIn() {
		return h
	}
	h.Username = c.Username
	switch c.Auth {
	case config.AuthPlain:
		h.Auth = smtpclient.AuthPlain
	case config.AuthLogin:
		h.Auth = smtpclient.AuthLogin
	case config.AuthXOAUTH2:
		h.Auth = smtpclient.AuthXOAUTH2
	}
	if h.Auth != smtpclient.AuthXOAUTH2 {
		sh := *c
		h.Password, h.PasswordSource = sh.Password, sh.PasswordSource()
		return h
	}
	if o := c.OAuth2; o != nil {
		sh := *c
		h.OAuth = &oauth.Options{Provider: oauth.Provider(o.Provider), TokenURL: o.TokenURL, Tenant: o.Tenant,
			ClientID: o.ClientID, Secret: sh.ClientSecret, SecretSource: secretSource(c),
			ServiceAccountFile: o.ServiceAccountFile, Subject: c.Username, Scopes: o.Scopes}
		h.SecretExpires, _ = o.SecretExpires()
	}
	return h
}

// secretSource names the client secret's file for the fix sentences.
func secretSource(c *config.Smarthost) string {
	if p := c.ClientSecretPath(); p != "" && c.OAuth2 != nil && c.OAuth2.ClientSecretFile != "" {
		return p
	}
	return "the file named by LoadCredential=" + c.SecretCredential() + ":FILE in ptrelay's unit (restart ptrelay after editing it)"
}

// allowsSender reports whether the host may carry mail from sender (its senders list). The null sender (bounces)
// may go through any host: a host that refuses it says so at MAIL, and the next one is tried.
func (h *Smarthost) allowsSender(sender string) bool {
	if len(h.Senders) == 0 || sender == "" {
		return true
	}
	i := strings.LastIndexByte(sender, '@')
	dom := strings.TrimSuffix(strings.ToLower(sender[i+1:]), ".")
	for _, d := range h.Senders {
		if d == dom {
			return true
		}
	}
	return false
}

// chunk is how many recipients one transaction through h carries: max_recipients, and no more than the smallest
// recipient budget, so that a transaction can always fit into an empty window.
func (h *Smarthost) chunk() int {
	n := h.MaxRecipients
	for _, r := range h.RecipientRate {
		n = min(n, r.N)
	}
	return max(n, 1)
}

// smarthost returns the configured host called name, or nil.
func (st *Settings) smarthost(name string) *Smarthost {
	for i := range st.Smarthosts {
		if st.Smarthosts[i].Name == name {
			return &st.Smarthosts[i]
		}
	}
	return nil
}

// identity is what makes a host the same host across a reload: where it is and how ptrelay logs in.
func (h *Smarthost) identity() string {
	id := fmt.Sprint(h.Address, "|", h.TLS, "|", h.Verify, "|", h.Auth, "|", h.Username, "|", h.PasswordSource, "|",
		h.ClientCert != nil)
	if h.OAuth != nil {
		o := h.OAuth
		id += fmt.Sprint("|", o.Provider, "|", o.TokenURL, "|", o.Tenant, "|", o.ClientID, "|", o.SecretSource, "|",
			o.ServiceAccountFile, "|", o.Scopes)
	}
	return id
}
