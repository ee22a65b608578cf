// Package dkim signs the mail ptrelay delivers with DKIM (RFC 6376; Ed25519 RFC 8463), and checks that what a
// domain publishes in DNS verifies what ptrelay signs. It holds the keys read from [[dkim.keys]], picks the key
// by the domain of the From: header, builds the DKIM-Signature fields with github.com/emersion/go-msgauth, makes
// and prints the TXT records to publish (`ptrelay dkim keygen|show`), and runs the DKIM lines of `ptrelay
// check`.
//
// It signs what it is given and never changes it: delivery hands it the message exactly as the attempt sends it
// (after every header ptrelay adds) and puts the returned fields in front. It knows nothing of SMTP sessions or
// the queue.
//
// Files: dkim.go (the signer and its keys), header.go (the header section, From: and h=), sign.go, record.go
// (TXT records, key generation), check.go (published keys against the private keys), dmarc.go.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"os"
	"strings"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"ptrelay/config"
)

// Key is one configured signing key.
type Key struct {
	Domain   string // d=, lower case
	Selector string // s=
	File     string // private_key_file
	// Signer is the private key; nil when the key was described without reading it (Describe).
	Signer crypto.Signer
	// Modified is the key file's modification time, for the age warning of `ptrelay check`; zero when unknown.
	Modified time.Time
	// ReadErr is why the key could not be read (LoadEach only); Signer is then nil.
	ReadErr error
}

// Name is where the key's public half is published: "selector._domainkey.domain".
func (k *Key) Name() string { return k.Selector + "._domainkey." + k.Domain }

// Algorithm is "rsa" or "ed25519" (the k= tag); "" when the key was not read.
func (k *Key) Algorithm() string {
	if k.Signer == nil {
		return ""
	}
	switch k.Signer.Public().(type) {
	case *rsa.PublicKey:
		return "rsa"
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

// String names the key for logs and `queue show`: "d=contoso.com s=ptr2026a (rsa-2048)".
func (k *Key) String() string {
	s := "d=" + k.Domain + " s=" + k.Selector
	if kind := k.Kind(); kind != "" {
		s += " (" + kind + ")"
	}
	return s
}

// Kind is the algorithm and size: "rsa-2048", "ed25519"; "" when the key was not read.
func (k *Key) Kind() string {
	switch pub := publicOf(k).(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", pub.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

func publicOf(k *Key) crypto.PublicKey {
	if k.Signer == nil {
		return nil
	}
	return k.Signer.Public()
}

// Signer signs messages with the configured keys. It does not change after it is made: a reload makes a new one.
// A nil *Signer signs nothing. Safe for concurrent use.
type Signer struct {
	keys     map[string][]*Key // by domain, lower case, in configuration order
	all      []*Key
	hostname string // ptrelay's own name (lower case): mail From: it is ptrelay's own
	own      string // hostname's domain, whose keys sign ptrelay's own mail
	header   msgauth.Canonicalization
	body     msgauth.Canonicalization
	oversign []string
}

// Load reads every key of cfg's [dkim]; nil and no error when there is none. An error names the key's file and
// says what is wrong with it (config.ReadDKIMKey): the daemon refuses to start, or keeps its running keys on a
// reload.
func Load(cfg *config.Config) (*Signer, error) {
	return build(cfg, readAll)
}

// Describe is Load without reading the private keys: enough to say which key would sign a message (`ptrelay
// queue show` from an admin's shell, which may not read the keys).
func Describe(cfg *config.Config) *Signer {
	s, _ := build(cfg, readNone)
	return s
}

// LoadEach is Load that keeps going past a key it cannot read, noting why in the key's ReadErr: `ptrelay check`
// and `ptrelay dkim show` report each key on its own.
func LoadEach(cfg *config.Config) *Signer {
	s, _ := build(cfg, readEach)
	return s
}

type readMode int

const (
	readAll  readMode = iota // every key, or an error
	readNone                 // names only
	readEach                 // every key that can be read; ReadErr for the others
)

func build(cfg *config.Config, mode readMode) (*Signer, error) {
	if len(cfg.DKIM.Keys) == 0 {
		return nil, nil
	}
	hc, bc, ok := cfg.DKIM.Canonicalization.Split()
	if !ok {
		hc, bc = "relaxed", "relaxed" // Validate refuses anything else; this guards a hand-built Config
	}
	s := &Signer{
		keys:     map[string][]*Key{},
		hostname: strings.ToLower(strings.TrimSuffix(cfg.Hostname, ".")),
		own:      strings.ToLower(cfg.SendingDomain()),
		header:   msgauth.Canonicalization(hc),
		body:     msgauth.Canonicalization(bc),
		oversign: cfg.DKIM.Oversign,
	}
	for _, kc := range cfg.DKIM.Keys {
		k := &Key{Domain: strings.ToLower(strings.TrimSuffix(kc.Domain, ".")), Selector: kc.Selector, File: kc.PrivateKeyFile}
		if mode != readNone {
			signer, err := config.ReadDKIMKey(kc.PrivateKeyFile)
			switch {
			case err != nil && mode == readAll:
				return nil, fmt.Errorf("dkim key %s: %w", k.Name(), err)
			case err != nil:
				k.ReadErr = err
			default:
				k.Signer = signer
			}
		}
		if st, err := os.Stat(kc.PrivateKeyFile); err == nil {
			k.Modified = st.ModTime()
		}
		s.keys[k.Domain] = append(s.keys[k.Domain], k)
		s.all = append(s.all, k)
	}
	return s, nil
}

// Keys returns every configured key, in configuration order.
func (s *Signer) Keys() []*Key {
	if s == nil {
		return nil
	}
	return s.all
}

// KeysFor returns the keys of domain (exact, case-insensitive).
func (s *Signer) KeysFor(domain string) []*Key {
	if s == nil {
		return nil
	}
	return s.keys[strings.ToLower(strings.TrimSuffix(domain, "."))]
}
