// Package dane checks a mail server's TLS certificate against its DANE TLSA records, as RFC 7672 (SMTP
// security via opportunistic DANE TLS) asks of an SMTP client: only DANE-TA(2) and DANE-EE(3) records count,
// with selectors Cert(0) and SPKI(1) and matching types Full(0), SHA2-256(1) and SHA2-512(2); a DANE-EE match
// needs no name and no date check (RFC 7672 3.1.1); a DANE-TA match is a trust anchor for a chain that must
// name the MX host or the next-hop domain (RFC 7672 3.1.2, 3.2.2).
//
// It compares decoded bytes: a record's hex is decoded by the resolver (dnscheck), so its case cannot matter
// (miekg/dns's TLSA.Verify compares hex strings and misses upper-case records). Finding the records, and
// deciding that they may be used (DNSSEC), are the caller's.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The TLSA fields that RFC 7672 3.1 lets SMTP use.
const (
	UsageDANETA = 2 // the record matches a trust anchor of the server's chain
	UsageDANEEE = 3 // the record matches the server's own certificate

	SelectorCert = 0 // the whole certificate (DER)
	SelectorSPKI = 1 // its SubjectPublicKeyInfo (DER)

	MatchFull   = 0 // the data itself
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Record is one TLSA record.
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %X", r.Usage, r.Selector, r.MatchingType, r.Data)
}

// Usable reports whether SMTP may use r (RFC 7672 3.1): usage DANE-TA or DANE-EE, a known selector and
// matching type, and data of the right length for its digest (RFC 7671 5: a malformed record is unusable).
// PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP, which has no agreed set of public CAs.
func Usable(r Record) bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// UsableOnly returns the usable records of rs.
func UsableOnly(rs []Record) []Record {
	var out []Record
	for _, r := range rs {
		if Usable(r) {
			out = append(out, r)
		}
	}
	return out
}

// Error is a certificate that no usable record accepts.
type Error struct {
	// Result is the failure's TLS-RPT result type (RFC 8460 4.3): "validation-failure", or for a DANE-TA
	// chain "certificate-host-mismatch" or "certificate-expired".
	Result string
	Reason string
}

func (e *Error) Error() string { return "DANE: " + e.Reason }

// Verify checks the server certificate of cs against records (usable ones: Usable), accepting on the first
// match. names are the reference identifiers for DANE-TA: the MX host name (the TLSA base domain) and the
// next-hop domain; now is the time a DANE-TA chain is checked at. The error is an *Error.
func Verify(records []Record, cs tls.ConnectionState, names []string, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return &Error{Result: "validation-failure", Reason: "the server sent no certificate"}
	}
	leaf := cs.PeerCertificates[0]
	var taErr error
	usable := 0
	for _, r := range records {
		if !Usable(r) {
			continue
		}
		usable++
		switch r.Usage {
		case UsageDANEEE:
			// RFC 7672 3.1.1: no name check, no expiry check: the record pins the key.
			if matches(r, leaf) {
				return nil
			}
		case UsageDANETA:
			err := verifyTA(r, cs.PeerCertificates, names, now)
			if err == nil {
				return nil
			}
			if taErr == nil || !errors.Is(err, errNoAnchor) {
				taErr = err
			}
		}
	}
	if usable == 0 {
		return &Error{Result: "tlsa-invalid", Reason: "no usable TLSA record"}
	}
	var ce x509.CertificateInvalidError
	var he x509.HostnameError
	switch {
	case taErr != nil && errors.As(taErr, &he):
		return &Error{Result: "certificate-host-mismatch", Reason: fmt.Sprintf("the certificate chains to the "+
			"DANE-TA trust anchor but names none of %s", strings.Join(names, ", "))}
	case taErr != nil && errors.As(taErr, &ce) && ce.Reason == x509.Expired:
		return &Error{Result: "certificate-expired", Reason: "the certificate chains to the DANE-TA trust anchor but " +
			"is expired or not yet valid"}
	case taErr != nil && !errors.Is(taErr, errNoAnchor):
		return &Error{Result: "validation-failure", Reason: "the certificate does not chain to the DANE-TA trust " +
			"anchor: " + taErr.Error()}
	}
	return &Error{Result: "validation-failure", Reason: fmt.Sprintf("the certificate (subject %q) matches none of "+
		"the %d usable TLSA record(s)", leaf.Subject.CommonName, usable)}
}

// errNoAnchor: the server's chain holds no certificate the DANE-TA record matches.
var errNoAnchor = errors.New("no certificate of the chain matches the DANE-TA record")

// verifyTA checks the chain against one DANE-TA record: the certificate it matches in the chain (or, for a
// full certificate in the record, that certificate: RFC 7671 5.2.2 lets servers leave it out) becomes the only
// root, and the leaf must chain to it and name one of names.
func verifyTA(r Record, chain []*x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	inter := x509.NewCertPool()
	found := false
	if r.Selector == SelectorCert && r.MatchingType == MatchFull {
		if c, err := x509.ParseCertificate(r.Data); err == nil {
			roots.AddCert(c)
			found = true
		}
	}
	for _, c := range chain {
		if matches(r, c) {
			roots.AddCert(c)
			found = true
		} else {
			inter.AddCert(c)
		}
	}
	if !found {
		return errNoAnchor
	}
	var first error
	for _, name := range names {
		_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: now})
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = errors.New("no name to check the certificate against")
	}
	return first
}

// matches compares the record's data with the certificate's selected part, hashed as the record says.
func matches(r Record, c *x509.Certificate) bool {
	var b []byte
	switch r.Selector {
	case SelectorCert:
		b = c.Raw
	case SelectorSPKI:
		b = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchSHA256:
		h := sha256.Sum256(b)
		b = h[:]
	case MatchSHA512:
		h := sha512.Sum512(b)
		b = h[:]
	case MatchFull:
	default:
		return false
	}
	return bytes.Equal(b, r.Data)
}
