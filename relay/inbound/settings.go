package inbound

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"ptrelay/config"
	"ptrelay/relay/message"
)

// settings is the part of the configuration one generation of sessions works with. A reload builds new
// settings for new connections; sessions in flight keep the settings they started with.
type settings struct {
	hostname        string
	allowed         []netip.Prefix
	maxSize         int64
	maxRcpts        int
	maxConns        int
	bare            message.LineEndings
	authRequiresTLS bool
	users           *userTable
	tls             *tls.Config // nil: no STARTTLS
	smtpTLS         *tls.Config // what go-smtp gets: tls behind a per-connection hook
	tlsLegacy       bool
	cert            *CertificateInfo // nil: no STARTTLS
}

func newSettings(cfg *config.Config, log *slog.Logger) (*settings, error) {
	sc := cfg.SMTP
	st := &settings{
		hostname:        cfg.Hostname,
		maxSize:         int64(sc.MaxMessageSize),
		maxRcpts:        sc.MaxRecipients,
		maxConns:        sc.MaxConnections,
		authRequiresTLS: sc.AuthRequiresTLS,
		tlsLegacy:       sc.TLSLegacy,
	}
	if st.hostname == "" {
		st.hostname = "localhost"
	}
	for _, n := range sc.AllowedNetworks {
		p, err := parseNetwork(n)
		if err != nil {
			return nil, fmt.Errorf("smtp.allowed_networks: %w", err)
		}
		st.allowed = append(st.allowed, p)
	}
	switch strings.ToLower(sc.BareNewlines) {
	case "", "reject":
		st.bare = message.Reject
	case "normalize":
		st.bare = message.Normalize
	default:
		return nil, fmt.Errorf("smtp.bare_newlines = %q: use \"reject\" or \"normalize\"", sc.BareNewlines)
	}
	users, err := newUserTable(sc.Users)
	if err != nil {
		return nil, err
	}
	st.users = users
	st.tls, err = loadTLS(cfg, log)
	if err != nil {
		return nil, err
	}
	if st.tls == nil && st.authRequiresTLS && !st.users.empty() {
		log.Warn("smtp.users are set but no certificate: AUTH is offered to loopback clients only; set smtp.tls_cert (\"auto\" is enough) or auth_requires_tls = false")
	}
	if st.tls != nil {
		st.cert = describeCertificate(cfg, st.tls.Certificates[0])
		st.smtpTLS = perConnTLS(st.tls)
		if st.tlsLegacy {
			log.Warn("smtp.tls_legacy = true: STARTTLS accepts TLS 1.0/1.1 and RSA-key-exchange CBC and 3DES suites; use it only for old Exchange/Windows senders on a trusted LAN")
		}
	}
	return st, nil
}

// parseNetwork accepts a CIDR prefix or a single address (a /32 or /128).
func parseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a prefix such as 192.168.1.0/24", s)
}

// allowedAddr reports whether a client at ip may relay without AUTH.
func (st *settings) allowedAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range st.allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
