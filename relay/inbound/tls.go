package inbound

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ptrelay/config"
)

// Names of the self-signed pair made for tls_cert = "auto", kept in data_dir so it survives restarts (Exchange
// pins nothing, but a stable certificate keeps its logs quiet).
const (
	autoCertFile = "inbound-tls-cert.pem"
	autoKeyFile  = "inbound-tls-key.pem"
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
		cert, err = autoCertificate(cfg.DataDir, cfg.Hostname, log)
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

// autoCertificate loads the self-signed pair from dataDir, making it on first use. RSA 2048 and not ECDSA:
// RSA key exchange, which Windows 2003 needs, works only with an RSA certificate, and every client takes RSA.
func autoCertificate(dataDir, hostname string, log *slog.Logger) (tls.Certificate, error) {
	certPath := filepath.Join(dataDir, autoCertFile)
	keyPath := filepath.Join(dataDir, autoKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("smtp.tls_cert = \"auto\": %s: %w (delete both files to make a new pair)", certPath, err)
	}
	if hostname == "" {
		hostname = "localhost"
	}
	certPEM, keyPEM, err := selfSigned(hostname, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileSync(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileSync(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("made a self-signed STARTTLS certificate (smtp.tls_cert = \"auto\")", "cert", certPath, "key", keyPath, "hostname", hostname)
	return tls.X509KeyPair(certPEM, keyPEM)
}

// selfSigned makes an RSA 2048 certificate for hostname valid for ten years.
func selfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"ptrelay self-signed"}},
		DNSNames:              []string{hostname},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return certPEM, keyPEM, nil
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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
