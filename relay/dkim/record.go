package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"ptrelay/config"
)

// maxString is the longest character-string a TXT record holds (RFC 1035 3.3); a longer value is published as
// several strings of one record, which receivers join (RFC 6376 3.6.2.2).
const maxString = 255

// Record is the TXT record that publishes a key's public half.
type Record struct {
	Name      string   `json:"name"`      // "selector._domainkey.domain"
	Algorithm string   `json:"algorithm"` // "rsa" or "ed25519"
	Bits      int      `json:"bits"`      // RSA modulus size; 256 for Ed25519
	Value     string   `json:"value"`     // "v=DKIM1; k=rsa; p=..."
	Strings   []string `json:"strings"`   // Value cut into strings of at most 255 bytes
}

// RecordOf returns the record to publish for a key's public half. An RSA key is published as its
// SubjectPublicKeyInfo (what every verifier reads), an Ed25519 key as its 32 raw bytes (RFC 8463 4.2).
func RecordOf(name string, pub crypto.PublicKey) (Record, error) {
	r := Record{Name: name}
	var p string
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return r, err
		}
		r.Algorithm, r.Bits, p = "rsa", pub.N.BitLen(), base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		r.Algorithm, r.Bits, p = "ed25519", 256, base64.StdEncoding.EncodeToString(pub)
	default:
		return r, fmt.Errorf("dkim: unsupported key type %T", pub)
	}
	head := "v=DKIM1; k=" + r.Algorithm + "; "
	r.Value = head + "p=" + p
	r.Strings = append([]string{head}, splitString("p="+p, maxString)...)
	return r, nil
}

// Record returns the key's record; the key must have been read (Load).
func (k *Key) Record() (Record, error) {
	if k.Signer == nil {
		return Record{}, fmt.Errorf("dkim key %s was not read", k.Name())
	}
	return RecordOf(k.Name(), k.Signer.Public())
}

func splitString(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// ZoneLines is the record as a zone file (BIND) writes it: one TXT record of several quoted strings, one string
// per line.
func (r Record) ZoneLines() string {
	var b strings.Builder
	b.WriteString(r.Name + ". IN TXT ( ")
	for i, s := range r.Strings {
		if i > 0 {
			b.WriteString("\n    ")
		}
		b.WriteString(`"` + s + `"`)
	}
	b.WriteString(" )")
	return b.String()
}

// Generate makes a new private key: "rsa" with bits (at least config.MinDKIMRSABits), or "ed25519".
func Generate(algo string, bits int) (crypto.Signer, error) {
	switch algo {
	case "rsa":
		if bits < config.MinDKIMRSABits {
			return nil, fmt.Errorf("-bits %d: receivers want RSA keys of at least %d bits", bits, config.MinDKIMRSABits)
		}
		if bits > 4096 {
			return nil, fmt.Errorf("-bits %d: more than 4096 bits makes a record some DNS servers and receivers cannot handle", bits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("-algo %q: write rsa (what every receiver verifies) or ed25519 (a second signature only)", algo)
}

// WriteKeyFile writes key as PKCS#8 PEM to path with mode 0600, and never over an existing file: the old key
// may still sign mail or be published.
func WriteKeyFile(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: ptrelay never overwrites a key (it may still sign mail, or be published); "+
			"choose another -out, and a new -selector for a new key", path)
	}
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// CheckNames refuses a domain or selector that cannot make a DNS name (`ptrelay dkim keygen` checks what the
// admin typed before it writes anything; the configuration is checked by config.Validate).
func CheckNames(domain, selector string) error {
	if !dnsName(domain) || !strings.Contains(domain, ".") {
		return fmt.Errorf("-domain %q is not a domain: write the domain of the From: addresses to sign, e.g. contoso.com", domain)
	}
	if !dnsName(selector) {
		return fmt.Errorf("-selector %q is not a selector: write a DNS label with the date in it, such as ptr2026a "+
			"(letters, digits, hyphens)", selector)
	}
	return nil
}

// dnsName accepts labels of letters, digits, hyphens and underscores, 1 to 63 characters each.
func dnsName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
