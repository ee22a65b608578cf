package smtpclient

import (
	"crypto/tls"
	"crypto/x509"
)

// TLSMode says whether and how a session is encrypted.
type TLSMode int

const (
	TLSOff           TLSMode = iota // never: a smart host's tls = "none", delivery.tls = "none"
	TLSOpportunistic                // STARTTLS when offered; plaintext when it is not offered or is refused
	TLSRequired                     // STARTTLS must be offered and succeed
	TLSImplicit                     // TLS from the first byte (port 465)
)

func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSRequired:
		return "required"
	case TLSImplicit:
		return "implicit"
	}
	return "off"
}

// TLSPolicy is how one connection is secured. It belongs to one candidate address, not to a route, so that a
// policy about one host (an MX host's DANE TLSA records or its domain's MTA-STS policy) can require TLS and
// check the certificate its own way for that host only.
type TLSPolicy struct {
	Mode TLSMode
	// Verify checks that the certificate chains to RootCAs and names ServerName (PKIX). Without it the
	// certificate is accepted as it comes, unless VerifyConnection refuses it.
	Verify  bool
	RootCAs *x509.CertPool // nil: the system's roots
	// ServerName is the name sent as SNI and verified; "" means Spec.Host.
	ServerName string
	// VerifyConnection, when set, runs after every handshake with the connection's state (tls.Config's hook of
	// the same name), after the PKIX check when Verify is set. Its error fails the handshake: DANE's match of
	// the certificate against TLSA records belongs here.
	VerifyConnection func(tls.ConnectionState) error
	// MinVersion is the lowest TLS version accepted; 0 means crypto/tls's default for clients (TLS 1.2).
	MinVersion uint16
	// ClientCert, when set, is presented to a server that asks for a client certificate (a smart host's
	// connector that authenticates the sending server by its certificate).
	ClientCert *tls.Certificate
	// Level names the security level for the log's tls= field, in Postfix's words (none, may, encrypt, verify,
	// dane, mta-sts); "" lets the caller derive it from Mode and Verify.
	Level string
	// Policy names the recipient's published policy behind this TLS ("MTA-STS", "DANE"), "" when there is none.
	// With Mode TLSRequired a TLS failure is that policy's to report; with TLSOpportunistic the policy is only
	// being tested (MTA-STS "testing").
	Policy string
}

func (p TLSPolicy) config(host string) *tls.Config {
	name := p.ServerName
	if name == "" {
		name = host
	}
	c := &tls.Config{
		ServerName:         name,
		RootCAs:            p.RootCAs,
		InsecureSkipVerify: !p.Verify,
		VerifyConnection:   p.VerifyConnection,
		MinVersion:         p.MinVersion,
	}
	if p.ClientCert != nil {
		c.Certificates = []tls.Certificate{*p.ClientCert}
	}
	return c
}
