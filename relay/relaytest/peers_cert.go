package relaytest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	keyErr  error
)

// sharedKey is the one RSA key of every certificate of the test process: generating RSA keys under -race is
// slow, and tests do not need distinct keys. RSA keeps legacy RSA-key-exchange cipher suites usable (old
// Exchange clients).
func sharedKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() { rsaKey, keyErr = rsa.GenerateKey(rand.Reader, 2048) })
	if keyErr != nil {
		t.Fatalf("relaytest: RSA key: %v", keyErr)
	}
	return rsaKey
}

// MakeCert writes a self-signed RSA-2048 certificate for hosts (names or IP addresses; default "localhost",
// 127.0.0.1 and ::1) and its key to dir as cert.pem and key.pem, and returns their paths and a pool that trusts
// it. It is its own trust anchor (a CA), as clients such as msmtp require.
func MakeCert(t testing.TB, dir string, hosts ...string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	tmpl := template(t, hosts[0], CertOptions{Hosts: hosts})
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	cert := sign(t, tmpl, tmpl, sharedKey(t))
	certFile, keyFile = writePair(t, dir, "cert.pem", "key.pem", cert)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// CA is a test certificate authority: clients that trust CertFile (or Pool) verify the certificates it issues,
// as a mail server's certificate is verified against the public CAs.
type CA struct {
	CertFile string         // the CA certificate (PEM), for SSL_CERT_FILE or a client's trust file
	Pool     *x509.CertPool // trusts the CA
	dir      string
	cert     *x509.Certificate
}

// CertOptions says what a certificate covers and when it is valid.
type CertOptions struct {
	Hosts []string // DNS names and IP addresses; the first is also the subject's common name
	// NotBefore and NotAfter bound the validity; zero: from an hour ago, for a week. A NotAfter in the past
	// makes an expired certificate.
	NotBefore, NotAfter time.Time
}

// NewCA makes a CA whose certificate is written to dir/ca.pem; the certificates it issues go to dir too.
func NewCA(t testing.TB, dir string) *CA {
	t.Helper()
	tmpl := template(t, "ptrelay test CA", CertOptions{})
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.ExtKeyUsage = nil
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	cert := sign(t, tmpl, tmpl, sharedKey(t))
	ca := &CA{dir: dir, cert: cert, Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.CertFile, _ = writePair(t, dir, "ca.pem", "ca.key", cert)
	return ca
}

// Issue writes a server certificate signed by the CA, and its key, to the CA's directory as name.pem and
// name.key, and returns their paths.
func (ca *CA) Issue(t testing.TB, name string, opt CertOptions) (certFile, keyFile string) {
	t.Helper()
	if len(opt.Hosts) == 0 {
		t.Fatal("relaytest: CA.Issue needs CertOptions.Hosts")
	}
	cert := sign(t, template(t, opt.Hosts[0], opt), ca.cert, sharedKey(t))
	return writePair(t, ca.dir, name+".pem", name+".key", cert)
}

// template is a server (and client) certificate for opt.Hosts, valid as opt says.
func template(t testing.TB, commonName string, opt CertOptions) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	if opt.NotBefore.IsZero() {
		opt.NotBefore = time.Now().Add(-time.Hour)
	}
	if opt.NotAfter.IsZero() {
		opt.NotAfter = time.Now().Add(7 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"ptrelay tests"}},
		NotBefore:    opt.NotBefore,
		NotAfter:     opt.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range opt.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("relaytest: certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writePair writes cert and the shared key as PEM files in dir.
func writePair(t testing.TB, dir, certName, keyName string, cert *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	keyDER := x509.MarshalPKCS1PrivateKey(sharedKey(t))
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
