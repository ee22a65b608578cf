package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

// DKIM is [dkim]: which mail ptrelay signs, and how. Without keys nothing is signed.
type DKIM struct {
	Canonicalization DKIMCanonicalization `toml:"canonicalization"` // header/body, e.g. "relaxed/relaxed"
	// Oversign names header fields signed once more than they occur, so that a field of that name added
	// after signing (a second From:) breaks the signature (RFC 6376 8.15).
	Oversign []string  `toml:"oversign"`
	Keys     []DKIMKey `toml:"keys"`
}

// DKIMKey is one [[dkim.keys]] entry: mail whose From: domain is Domain is signed with d=Domain, s=Selector.
// Two entries for one domain give two signatures (RSA and Ed25519).
type DKIMKey struct {
	Domain         string `toml:"domain"`
	Selector       string `toml:"selector"`
	PrivateKeyFile string `toml:"private_key_file"` // PKCS#8 PEM: RSA of at least 2048 bits, or Ed25519
}

// DKIMCanonicalization is dkim.canonicalization: "header/body", each "relaxed" or "simple" (RFC 6376 3.4).
type DKIMCanonicalization string

// Split returns the header and body canonicalization; ok is false for anything but the four documented forms.
func (c DKIMCanonicalization) Split() (header, body string, ok bool) {
	header, body, found := strings.Cut(string(c), "/")
	valid := func(s string) bool { return s == "relaxed" || s == "simple" }
	return header, body, found && valid(header) && valid(body)
}

// MinDKIMRSABits is the smallest RSA key ptrelay signs with: receivers discount 1024-bit keys (Gmail's sender
// guidelines ask for 2048), and RFC 8301 3.2 calls anything below 1024 invalid.
const MinDKIMRSABits = 2048

func (c *Config) checkDKIM(k *checker) {
	d := &c.DKIM
	if _, _, ok := d.Canonicalization.Split(); !ok {
		k.add("dkim.canonicalization", "%q is not a choice: write \"relaxed/relaxed\" (the default: it survives "+
			"the re-folding and whitespace changes servers on the way make), or \"simple/simple\", "+
			"\"relaxed/simple\", \"simple/relaxed\"", d.Canonicalization)
	}
	for i, name := range d.Oversign {
		if !validFieldName(name) {
			k.add(idx("dkim.oversign", i), "%q is not a header field name: write names such as \"From\" or "+
				"\"Subject\", without the colon", name)
		}
	}
	seen := map[string]int{}
	for i, key := range d.Keys {
		p := idx("dkim.keys", i)
		if !validDomain(key.Domain) {
			k.add(p+".domain", "%q is not a domain: write the domain of the From: addresses to sign, e.g. "+
				"\"contoso.com\"", key.Domain)
		}
		if !validSelector(key.Selector) {
			k.add(p+".selector", "%q is not a selector: write a DNS label such as \"ptr2026a\" (letters, digits, "+
				"hyphens; a date in it makes rotation easy)", key.Selector)
		}
		id := strings.ToLower(key.Selector + "._domainkey." + key.Domain)
		if first, dup := seen[id]; dup {
			k.add(p+".selector", "%s is already dkim.keys[%d]: a second key for a domain needs its own selector "+
				"(its own TXT record)", id, first)
		} else {
			seen[id] = i + 1
		}
		if key.PrivateKeyFile == "" {
			k.add(p+".private_key_file", "is empty: write the path of the key, e.g. one made by "+
				"`ptrelay dkim keygen -domain %s -selector %s -out /etc/ptrelay/dkim/%s.%s.pem`",
				orWord(key.Domain, "DOMAIN"), orWord(key.Selector, "SELECTOR"), orWord(key.Domain, "DOMAIN"),
				orWord(key.Selector, "SELECTOR"))
		} else {
			checkFile(k, p+".private_key_file", key.PrivateKeyFile, "the DKIM private key")
		}
	}
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

// validFieldName: RFC 5322 2.2, printable ASCII but the colon.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// validSelector: one or more DNS labels (RFC 6376 3.1 allows dots in a selector).
func validSelector(s string) bool {
	return s != "" && !strings.HasSuffix(s, ".") && validHostname(s)
}

// checkDKIMSecrets is CheckSecrets' part for [dkim]: every key file is read and parsed as ptrelay will at start
// and reload. The daemon refuses a key it cannot read or use, naming the file and the reason; an admin's shell
// may lack the right to read it, so there that is a warning. A key file every user may read is warned about:
// with it anyone on the machine can sign mail as the domain (a group-readable key is the usual way to hand it
// to a dedicated user, and is fine).
func (c *Config) checkDKIMSecrets(o SecretsOptions) []Finding {
	var out []Finding
	for i, k := range c.DKIM.Keys {
		key := idx("dkim.keys", i) + ".private_key_file"
		if k.PrivateKeyFile == "" {
			continue // Validate reports it
		}
		if !o.Daemon && fromCredentials(k.PrivateKeyFile) {
			out = append(out, finding(slog.LevelInfo, false, key, "%s is a systemd credential (LoadCredential=): "+
				"the service reads it at start, where the key is checked", k.PrivateKeyFile))
			continue
		}
		_, err := ReadDKIMKey(k.PrivateKeyFile)
		var perm *fs.PathError
		switch {
		case err != nil && !o.Daemon && errors.As(err, &perm) && errors.Is(err, fs.ErrPermission):
			out = append(out, finding(slog.LevelWarn, false, key, "%s cannot be read from this shell (%v), so the "+
				"key was not checked: run `ptrelay config check` as root", k.PrivateKeyFile, unwrapPath(err)))
			continue
		case err != nil:
			out = append(out, finding(slog.LevelError, true, key, "%v", err))
			continue
		}
		if st, err := os.Stat(k.PrivateKeyFile); err == nil && st.Mode().Perm()&0o007 != 0 {
			out = append(out, finding(slog.LevelWarn, false, key, "%s has mode %04o: every user of this machine "+
				"can read it and sign mail as %s; make it readable by ptrelay only (chmod 600 %s, or 640 with "+
				"ptrelay's group)", k.PrivateKeyFile, st.Mode().Perm(), k.Domain, k.PrivateKeyFile))
		}
	}
	return out
}

// ReadDKIMKey reads a DKIM private key: PEM, PKCS#8 ("BEGIN PRIVATE KEY", what `ptrelay dkim keygen` and
// opendkim-genkey write) or an RSA key in PKCS#1 form ("BEGIN RSA PRIVATE KEY", older OpenDKIM keys). RSA must
// have at least MinDKIMRSABits; Ed25519 is the other choice (RFC 8463). An error names the file and says what to
// do; a file that cannot be opened keeps its *fs.PathError inside.
func ReadDKIMKey(path string) (crypto.Signer, error) {
	const fix = "make one with `ptrelay dkim keygen` (or openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be read (%w): check the path, and that ptrelay's user may read it "+
			"(with the packaged unit: LoadCredential=, see docs/install.md)", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM key (no \"-----BEGIN PRIVATE KEY-----\" line): %s", path, fix)
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%s is encrypted with a passphrase, which ptrelay cannot type at start: write "+
			"it without one (openssl pkey -in %s -out NEWFILE), readable by ptrelay only", path, path)
	case "PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("%s holds a %s, not the private key: name the private key file", path, strings.ToLower(block.Type))
	default:
		return nil, fmt.Errorf("%s holds a %q PEM block, not a PKCS#8 private key: %s", path, block.Type, fix)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: the key cannot be parsed (%v): %s", path, err, fix)
	}
	switch key := parsed.(type) {
	case *rsa.PrivateKey:
		if bits := key.N.BitLen(); bits < MinDKIMRSABits {
			return nil, fmt.Errorf("%s is a %d-bit RSA key; receivers want at least %d bits: make a new key "+
				"with `ptrelay dkim keygen` under a new selector and publish its record", path, bits, MinDKIMRSABits)
		}
		return key, nil
	case ed25519.PrivateKey:
		return key, nil
	}
	return nil, fmt.Errorf("%s holds a %T key; DKIM signs with RSA (2048 bits or more) or Ed25519: %s", path, parsed, fix)
}
