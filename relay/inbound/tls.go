package inbound

import (
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"ptrelay/config"
)

// legacySuites is the TLS 1.0-1.2 suite list of tls_legacy = true: Go's modern defaults first, then what
// Windows 2008 / 2008 R2 offer (ECDHE-RSA with CBC), then Windows 2003 with KB948963 (RSA key exchange with
// AES-CBC), then Windows 2003 without it (3DES). Go removed RSA key exchange (1.22) and 3DES (1.23) from its
// defaults; listing them in Config.CipherSuites brings them back for this listener only, unlike GODEBUG, which
// would weaken outbound TLS too.
var legacySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
}

// loadTLS builds the STARTTLS configuration, or returns nil when tls_cert/tls_key are not set.
func loadTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	sc := cfg.SMTP
	var cert tls.Certificate
	var err error
	switch {
	case sc.TLSCert == "" && sc.TLSKey == "":
		if sc.TLSLegacy {
			log.Warn("smtp.tls_legacy is set but no certificate is configured: STARTTLS is not offered at all")
		}
		return nil, nil
	case strings.EqualFold(sc.TLSCert, "auto"):
		cert, err = autoCertificate(cfg.DataDir, wantedNames(cfg, net.InterfaceAddrs, log), time.Now(), log)
	case sc.TLSCert == "" || sc.TLSKey == "":
		return nil, errors.New("smtp.tls_cert and smtp.tls_key must be set together (or tls_cert = \"auto\")")
	default:
		cert, err = tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			err = fmt.Errorf("smtp.tls_cert/tls_key: %w (both must be PEM files readable by ptrelay)", err)
		}
	}
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	if sc.TLSLegacy {
		tc.MinVersion = tls.VersionTLS10
		tc.CipherSuites = legacySuites
		if _, ok := cert.PrivateKey.(*rsa.PrivateKey); !ok {
			log.Warn("smtp.tls_legacy: the certificate's key is not RSA, so Windows 2003 clients (RSA key exchange only) still cannot use STARTTLS", "tls_cert", sc.TLSCert)
		}
	}
	return tc, nil
}

// CertificateInfo describes the STARTTLS certificate, for `ptrelay status`.
type CertificateInfo struct {
	File     string    // the PEM file; for "auto" the one in data_dir, to copy to servers that must trust it
	Auto     bool      // tls_cert = "auto": made and signed by ptrelay itself
	Names    []string  // the subject alternative names: DNS names, then IP addresses
	NotAfter time.Time // when it expires
}

func describeCertificate(cfg *config.Config, cert tls.Certificate) *CertificateInfo {
	info := &CertificateInfo{File: cfg.SMTP.TLSCert}
	if strings.EqualFold(cfg.SMTP.TLSCert, "auto") {
		info.File, info.Auto = AutoCertPath(cfg.DataDir), true
	}
	if abs, err := filepath.Abs(info.File); err == nil {
		info.File = abs // an admin's shell is rarely in the daemon's working directory
	}
	if leaf := cert.Leaf; leaf != nil {
		info.Names = namesOf(leaf).list()
		info.NotAfter = leaf.NotAfter
	}
	return info
}

// Certificate returns the STARTTLS certificate that new sessions get, or nil when STARTTLS is not offered.
func (s *Server) Certificate() *CertificateInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set.cert == nil {
		return nil
	}
	c := *s.set.cert
	return &c
}

// TLSCertificate returns the certificate new STARTTLS sessions get, or nil when STARTTLS is not offered. The web
// console serves the same pair with web.tls_cert = "auto", and follows it when a reload makes a new one.
func (s *Server) TLSCertificate() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set.tls == nil || len(s.set.tls.Certificates) == 0 {
		return nil
	}
	return &s.set.tls.Certificates[0]
}

// tlsVersionName renders a protocol version as admins read it in Exchange's logs.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	case 0x0300:
		return "SSL3.0"
	}
	return fmt.Sprintf("0x%04x", v)
}

// handshakeHint explains, from the client's hello, why a handshake is likely to fail with this configuration,
// in words that point at the setting to change. It returns "" when nothing obvious is wrong.
func handshakeHint(hello *tls.ClientHelloInfo, tc *tls.Config) string {
	maxOffered := uint16(0)
	for _, v := range hello.SupportedVersions {
		if v > maxOffered && v <= tls.VersionTLS13 {
			maxOffered = v
		}
	}
	minOK := tc.MinVersion
	if minOK == 0 {
		minOK = tls.VersionTLS12
	}
	if maxOffered != 0 && maxOffered < minOK {
		return fmt.Sprintf("client speaks at most %s; set smtp.tls_legacy = true to accept it (old Windows / Exchange)", tlsVersionName(maxOffered))
	}
	if maxOffered == tls.VersionTLS13 {
		return ""
	}
	ours := tc.CipherSuites
	if ours == nil { // Go's defaults: the secure list minus RSA key exchange
		for _, s := range tls.CipherSuites() {
			if !strings.HasPrefix(s.Name, "TLS_RSA_") {
				ours = append(ours, s.ID)
			}
		}
	}
	for _, c := range hello.CipherSuites {
		for _, o := range ours {
			if c == o {
				return ""
			}
		}
	}
	var names []string
	for _, c := range hello.CipherSuites {
		names = append(names, tls.CipherSuiteName(c))
	}
	hint := "no cipher suite in common; client offers " + strings.Join(names, ",")
	if tc.CipherSuites == nil {
		hint += "; set smtp.tls_legacy = true to accept RSA key exchange and 3DES suites"
	}
	return hint
}
