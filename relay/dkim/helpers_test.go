package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"sync"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// Test keys, made once per test binary (RSA generation takes a while under -race).
var (
	rsaKeyOnce   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	otherRSAOnce = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	edKeyOnce    = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// signerWith builds a Signer for hostname relay.contoso.test with the given keys, relaxed/relaxed and the
// default oversign list.
func signerWith(keys ...*Key) *Signer {
	s := &Signer{keys: map[string][]*Key{}, hostname: "relay.contoso.test", own: "contoso.test",
		header: msgauth.CanonicalizationRelaxed, body: msgauth.CanonicalizationRelaxed,
		oversign: []string{"From", "To", "Cc", "Subject", "Date", "Reply-To"}}
	for _, k := range keys {
		s.keys[k.Domain] = append(s.keys[k.Domain], k)
		s.all = append(s.all, k)
	}
	return s
}

func key(domain, selector string, signer crypto.Signer) *Key {
	return &Key{Domain: domain, Selector: selector, File: "/etc/ptrelay/dkim/" + domain + "." + selector + ".pem", Signer: signer}
}

// zone is a stub DNS for go-msgauth: name -> TXT records (each one string, as a resolver joins them).
type zone map[string][]string

func (z zone) lookup(name string) ([]string, error) {
	if txts, ok := z[name]; ok {
		return txts, nil
	}
	return nil, &notFound{name}
}

type notFound struct{ name string }

func (e *notFound) Error() string   { return "no such host " + e.name }
func (e *notFound) Timeout() bool   { return false }
func (e *notFound) Temporary() bool { return false }

// publish returns a zone publishing every key's record.
func publish(t *testing.T, keys ...*Key) zone {
	t.Helper()
	z := zone{}
	for _, k := range keys {
		rec, err := k.Record()
		if err != nil {
			t.Fatal(err)
		}
		z[k.Name()] = append(z[k.Name()], strings.Join(rec.Strings, ""))
	}
	return z
}

// sign signs msg with s and returns the fields and the signed message.
func sign(t *testing.T, s *Signer, msg string, o SignOptions) (string, Decision) {
	t.Helper()
	fields, d, err := s.Sign(strings.NewReader(msg), o)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return string(fields) + msg, d
}

// verify returns each signature's verification error (nil: it verifies), as go-msgauth sees them.
func verify(t *testing.T, signed string, z zone) []error {
	t.Helper()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader([]byte(signed)), &msgauth.VerifyOptions{LookupTXT: z.lookup})
	if err != nil {
		t.Fatalf("VerifyWithOptions: %v", err)
	}
	out := make([]error, len(vs))
	for i, v := range vs {
		out[i] = v.Err
	}
	return out
}

const baseMsg = "Received: from exchange.contoso.local by relay.contoso.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
	"From: Alice <alice@contoso.test>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: quarterly figures\r\n" +
	"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <abc.123@contoso.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	".a line starting with a dot\r\n" +
	"trailing spaces   \r\n" +
	"caf\xc3\xa9\r\n" +
	"\r\n\r\n"
