package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type certKey struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string, names []string, parent *certKey, ca bool, notAfter time.Time) *certKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{c, key}
}

func sha256Of(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
func sha512Of(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

// TestVerify: DANE-EE pins the key whatever the names and dates; DANE-TA anchors a chain that must name the MX
// host or the next-hop domain and be in date; every selector and matching type; unusable records never match.
func TestVerify(t *testing.T) {
	later := now.Add(30 * 24 * time.Hour)
	ca := newCert(t, "Test CA", nil, nil, true, later)
	inter := newCert(t, "Test Intermediate", nil, ca, true, later)
	leaf := newCert(t, "mx.example.test", []string{"mx.example.test"}, inter, false, later)
	wrongName := newCert(t, "other.test", []string{"other.test"}, inter, false, later)
	expired := newCert(t, "mx.example.test", []string{"mx.example.test"}, inter, false, now.Add(-time.Hour))
	selfSigned := newCert(t, "whatever", []string{"whatever.invalid"}, nil, false, now.Add(-time.Hour))
	names := []string{"mx.example.test", "example.test"}

	state := func(chain ...*certKey) tls.ConnectionState {
		var cs tls.ConnectionState
		for _, c := range chain {
			cs.PeerCertificates = append(cs.PeerCertificates, c.cert)
		}
		return cs
	}
	eeSPKI := Record{3, 1, 1, sha256Of(leaf.cert.RawSubjectPublicKeyInfo)}
	cases := []struct {
		name    string
		records []Record
		cs      tls.ConnectionState
		result  string // "" = accepted
	}{
		{"EE spki sha256", []Record{eeSPKI}, state(leaf, inter), ""},
		{"EE cert sha512", []Record{{3, 0, 2, sha512Of(leaf.cert.Raw)}}, state(leaf), ""},
		{"EE cert full", []Record{{3, 0, 0, leaf.cert.Raw}}, state(leaf), ""},
		{"EE ignores name and dates", []Record{{3, 1, 1, sha256Of(selfSigned.cert.RawSubjectPublicKeyInfo)}}, state(selfSigned), ""},
		{"EE mismatch", []Record{{3, 1, 1, sha256Of(wrongName.cert.RawSubjectPublicKeyInfo)}}, state(leaf, inter), "validation-failure"},
		{"EE second record matches", []Record{{3, 1, 1, make([]byte, 32)}, eeSPKI}, state(leaf, inter), ""},
		{"TA intermediate in chain", []Record{{2, 0, 1, sha256Of(inter.cert.Raw)}}, state(leaf, inter), ""},
		{"TA root spki in chain", []Record{{2, 1, 1, sha256Of(ca.cert.RawSubjectPublicKeyInfo)}}, state(leaf, inter, ca), ""},
		{"TA root full cert, not sent", []Record{{2, 0, 0, ca.cert.Raw}}, state(leaf, inter), ""},
		{"TA hash of root not sent", []Record{{2, 0, 1, sha256Of(ca.cert.Raw)}}, state(leaf, inter), "validation-failure"},
		{"TA next-hop name", []Record{{2, 0, 1, sha256Of(inter.cert.Raw)}}, state(newCert(t, "x", []string{"example.test"}, inter, false, later), inter), ""},
		{"TA wrong name", []Record{{2, 0, 1, sha256Of(inter.cert.Raw)}}, state(wrongName, inter), "certificate-host-mismatch"},
		{"TA expired", []Record{{2, 0, 1, sha256Of(inter.cert.Raw)}}, state(expired, inter), "certificate-expired"},
		{"TA of another CA", []Record{{2, 0, 1, sha256Of(selfSigned.cert.Raw)}}, state(leaf, inter), "validation-failure"},
		{"PKIX-EE is unusable", []Record{{1, 1, 1, sha256Of(leaf.cert.RawSubjectPublicKeyInfo)}}, state(leaf), "tlsa-invalid"},
		{"wrong digest length is unusable", []Record{{3, 1, 1, sha256Of(leaf.cert.RawSubjectPublicKeyInfo)[:31]}}, state(leaf), "tlsa-invalid"},
		{"no certificate", []Record{eeSPKI}, tls.ConnectionState{}, "validation-failure"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.records, c.cs, names, now)
			var de *Error
			switch {
			case c.result == "" && err != nil:
				t.Errorf("Verify: %v; want accepted", err)
			case c.result != "" && (!errors.As(err, &de) || de.Result != c.result):
				t.Errorf("Verify: %v; want a %s failure", err, c.result)
			}
		})
	}
}

// TestUsable: the records RFC 7672 3.1 lets SMTP use.
func TestUsable(t *testing.T) {
	h := make([]byte, 32)
	for _, c := range []struct {
		r  Record
		ok bool
	}{
		{Record{3, 1, 1, h}, true},
		{Record{2, 0, 1, h}, true},
		{Record{2, 1, 2, make([]byte, 64)}, true},
		{Record{3, 0, 0, []byte{1}}, true},
		{Record{0, 1, 1, h}, false},
		{Record{1, 1, 1, h}, false},
		{Record{4, 1, 1, h}, false},
		{Record{3, 2, 1, h}, false},
		{Record{3, 1, 3, h}, false},
		{Record{3, 1, 2, h}, false},
		{Record{3, 1, 0, nil}, false},
	} {
		if Usable(c.r) != c.ok {
			t.Errorf("Usable(%s) = %v, want %v", c.r, !c.ok, c.ok)
		}
	}
	if n := len(UsableOnly([]Record{{3, 1, 1, h}, {1, 1, 1, h}})); n != 1 {
		t.Errorf("UsableOnly kept %d, want 1", n)
	}
}
