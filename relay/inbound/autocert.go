package inbound

import (
	"crypto"
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
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"ptrelay/config"
)

// Names of the self-signed pair made for tls_cert = "auto", kept in data_dir so it survives restarts: a server
// told to trust it (Exchange with TlsAuthLevel CertificateValidation) keeps trusting it.
const (
	autoCertFile = "inbound-tls-cert.pem"
	autoKeyFile  = "inbound-tls-key.pem"
)

const (
	// autoCertLifetime: ten years, so that an office relay never meets an expired certificate of its own.
	autoCertLifetime = 10 * 365 * 24 * time.Hour
	// autoCertRenewBefore: a certificate this close to its end is replaced at the next start or reload.
	autoCertRenewBefore = 30 * 24 * time.Hour
)

// AutoCertPath is where the tls_cert = "auto" certificate of a relay with this data_dir is kept (the file an
// admin copies to the servers that must trust it).
func AutoCertPath(dataDir string) string { return filepath.Join(dataDir, autoCertFile) }

// certNames is what the "auto" certificate names: every name and address a client may use to reach the relay.
// Microsoft documents that Exchange's "Basic authentication over TLS" expects the exact name of the smart host
// in the certificate, and an admin may give Exchange the relay's host name, a LAN alias or an IP address.
type certNames struct {
	Primary string       // hostname: the subject's common name, for old clients that still read it
	DNS     []string     // lower case, sorted, unique; Primary among them
	IPs     []netip.Addr // unmapped, sorted, unique
}

func (n *certNames) addDNS(name string) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != "" && !slices.Contains(n.DNS, name) {
		n.DNS = append(n.DNS, name)
	}
}

func (n *certNames) addIP(a netip.Addr) {
	a = a.Unmap().WithZone("")
	if a.IsValid() && !slices.Contains(n.IPs, a) {
		n.IPs = append(n.IPs, a)
	}
}

func (n *certNames) sort() {
	slices.Sort(n.DNS)
	slices.SortFunc(n.IPs, netip.Addr.Compare)
}

// list returns the names as the journal and `ptrelay status` show them: DNS names, then addresses.
func (n certNames) list() []string {
	out := slices.Clone(n.DNS)
	for _, a := range n.IPs {
		out = append(out, a.String())
	}
	return out
}

func (n certNames) String() string { return strings.Join(n.list(), ", ") }

// wantedNames collects the names of the "auto" certificate: hostname, smtp.tls_names and the listen addresses.
// A listener on every address (":25", "[::]:25", "0.0.0.0:25") stands for the addresses the machine has now
// (IPv4 only for 0.0.0.0), as interfaceAddrs reports them, without link-local ones: those need a zone, which no
// certificate can carry and no send connector names. A failure to list them is logged and leaves them out.
func wantedNames(cfg *config.Config, interfaceAddrs func() ([]net.Addr, error), log *slog.Logger) certNames {
	var n certNames
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = "localhost"
	}
	n.addDNS(hostname)
	n.Primary = n.DNS[0]
	for _, name := range cfg.SMTP.TLSNames {
		if a, err := netip.ParseAddr(name); err == nil {
			n.addIP(a)
		} else {
			n.addDNS(name)
		}
	}
	var everyAddr, everyV4 bool
	for _, l := range cfg.SMTP.Listen {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue // config validation reports it
		}
		a, err := netip.ParseAddr(host)
		switch {
		case host == "" || err == nil && a == netip.IPv6Unspecified():
			everyAddr = true
		case err == nil && a == netip.IPv4Unspecified():
			everyV4 = true
		case err == nil:
			n.addIP(a)
		default:
			n.addDNS(host)
		}
	}
	if everyAddr || everyV4 {
		addrs, err := interfaceAddrs()
		if err != nil {
			log.Warn("smtp.tls_cert = \"auto\": cannot list this machine's addresses for the certificate; "+
				"list the address your servers use in smtp.tls_names", "err", err)
		}
		for _, ia := range addrs {
			p, err := netip.ParsePrefix(ia.String())
			if err != nil {
				continue
			}
			a := p.Addr().Unmap()
			if a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || !everyAddr && !a.Is4() {
				continue
			}
			n.addIP(a)
		}
	}
	n.sort()
	return n
}

// namesOf returns the names a certificate carries, in certNames form.
func namesOf(c *x509.Certificate) certNames {
	var n certNames
	for _, d := range c.DNSNames {
		n.addDNS(d)
	}
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			n.addIP(a)
		}
	}
	n.sort()
	return n
}

// autoCertificate returns the self-signed pair kept in dataDir for want. The key is made once and kept; the
// certificate is made again, for the same key, when it does not carry exactly the wanted names, is within
// autoCertRenewBefore of its end, or does not belong to the key. Keeping the key means only the certificate file
// is ever replaced (atomically), so a crash cannot leave a certificate beside a key that does not match it.
func autoCertificate(dataDir string, want certNames, now time.Time, log *slog.Logger) (tls.Certificate, error) {
	certPath := AutoCertPath(dataDir)
	keyPath := filepath.Join(dataDir, autoKeyFile)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	key, keyPEM, err := loadOrMakeKey(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	oldPEM, err := os.ReadFile(certPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("smtp.tls_cert = \"auto\": %w", err)
	}
	why := "none kept yet"
	var old *x509.Certificate
	if oldPEM != nil {
		if pair, err := tls.X509KeyPair(oldPEM, keyPEM); err != nil {
			why = "the kept one does not match the key (" + err.Error() + ")"
		} else {
			old = pair.Leaf
			switch have := namesOf(old); {
			case have.String() != want.String() || old.Subject.CommonName != want.Primary:
				why = "its names change from " + have.String() + " to " + want.String()
			case now.Add(autoCertRenewBefore).After(old.NotAfter):
				why = "the kept one expires on " + old.NotAfter.UTC().Format(time.DateOnly)
			default:
				return pair, nil
			}
		}
	}
	certPEM, err := selfSigned(key, want, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileSync(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("smtp.tls_cert = \"auto\": %w", err)
	}
	if old != nil {
		// An admin may have imported the old certificate as trusted on Exchange: say so loudly.
		log.Warn("made a new self-signed STARTTLS certificate (smtp.tls_cert = \"auto\"): servers told to trust "+
			"the old one (Exchange with TlsAuthLevel CertificateValidation) must be given the new one",
			"reason", why, "cert", certPath, "names", want.String())
	} else {
		log.Info("made a self-signed STARTTLS certificate (smtp.tls_cert = \"auto\")", "reason", why,
			"cert", certPath, "key", keyPath, "names", want.String())
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// loadOrMakeKey reads the RSA key of the "auto" pair, or makes and writes one. RSA 2048 and not ECDSA: RSA key
// exchange, which Windows 2003 needs, works only with an RSA certificate, and every client takes RSA.
func loadOrMakeKey(keyPath string) (crypto.Signer, []byte, error) {
	keyPEM, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		block, _ := pem.Decode(keyPEM)
		if block == nil {
			return nil, nil, fmt.Errorf("smtp.tls_cert = \"auto\": %s holds no PEM key (delete it and %s to make a new pair)", keyPath, autoCertFile)
		}
		key, err := parsePrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("smtp.tls_cert = \"auto\": %s: %w (delete it and %s to make a new pair)", keyPath, err, autoCertFile)
		}
		return key, keyPEM, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("smtp.tls_cert = \"auto\": %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFileSync(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("smtp.tls_cert = \"auto\": %w", err)
	}
	return key, keyPEM, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, errors.New("not an RSA (PKCS#1) or PKCS#8 private key")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unusable key type %T", k)
	}
	return s, nil
}

// selfSigned makes a certificate for names, valid for autoCertLifetime, signed by key itself.
func selfSigned(key crypto.Signer, names certNames, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	cn := names.Primary
	if cn == "" {
		cn = "localhost"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ptrelay self-signed"}},
		DNSNames:              names.DNS,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(autoCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, a := range names.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// writeFileSync replaces path atomically: a temporary file, fsync'd, renamed over path, and the directory
// fsync'd so the rename survives a power cut.
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
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
