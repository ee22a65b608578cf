package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// SignOptions are the choices of one attempt's route.
type SignOptions struct {
	// SafeHeaders leaves Message-ID and Date out of h=: for a smart host that rewrites them (Amazon SES
	// replaces Message-ID, which would break a signature covering it).
	SafeHeaders bool
}

// Plan says what Sign would do with a message whose header section is headerSection, without signing: for
// `ptrelay queue show`. It needs no private key (Describe is enough).
func (s *Signer) Plan(headerSection []byte) Decision {
	if s == nil {
		return Decision{Reason: ReasonNoKey}
	}
	h, tooLong, _ := readHeader(bufio.NewReader(bytes.NewReader(headerSection)))
	if tooLong {
		return Decision{Reason: ReasonBadHeader}
	}
	return s.decide(&h)
}

func (s *Signer) decide(h *header) Decision {
	domain, why := h.fromDomain()
	if why != "" {
		return Decision{Reason: why}
	}
	if keys := s.keys[domain]; len(keys) > 0 {
		return Decision{Domain: domain, Keys: keys}
	}
	if domain == s.hostname && s.own != "" && len(s.keys[s.own]) > 0 {
		// ptrelay's bounces and alert mail come From: MAILER-DAEMON@hostname and ptrelay@hostname; hostname's
		// domain signs them (d= is then the organizational domain of From:, which DMARC's relaxed alignment
		// accepts).
		return Decision{Domain: domain, Keys: s.keys[s.own], Own: true}
	}
	return Decision{Domain: domain, Reason: ReasonNoKey}
}

// Sign reads a message from r and returns the DKIM-Signature fields to put in front of it (each ending in
// CRLF, one per key of the From: domain), and the decision. A message that is not to be signed (Decision says
// why) gives no fields and no error, and only its header section is read. An error is a failure to read r, or
// to sign: the message must not go out as if signed.
//
// The message must be exactly what is sent after the fields (CRLF line ends, dot-stuffing not yet applied), and
// must not change afterwards.
func (s *Signer) Sign(r io.Reader, o SignOptions) ([]byte, Decision, error) {
	if s == nil {
		return nil, Decision{Reason: ReasonNoKey}, nil
	}
	br := bufio.NewReaderSize(r, 32<<10)
	h, tooLong, err := readHeader(br)
	if err != nil {
		return nil, Decision{}, err
	}
	if tooLong {
		return nil, Decision{Reason: ReasonBadHeader}, nil
	}
	d := s.decide(&h)
	if !d.Signed() {
		return nil, d, nil
	}
	signers, err := s.newSigners(d.Keys, headerKeys(h.counts(), s.oversign, o.SafeHeaders))
	if err != nil {
		return nil, d, err
	}
	closeAll := func() {
		for _, sg := range signers {
			_ = sg.Close()
		}
	}
	writers := make([]io.Writer, len(signers))
	for i, sg := range signers {
		writers[i] = sg
	}
	w := io.MultiWriter(writers...)
	if _, err := w.Write(h.raw); err != nil {
		closeAll()
		return nil, d, fmt.Errorf("dkim: hashing the header: %w", err)
	}
	if !h.ended {
		// A message that is all header (RFC 5322 3.5: the body is optional) has an empty body; the signer needs the
		// empty line to know where the header ends. Nothing is added to what is sent (the SMTP client ends a last
		// line without CRLF with one, as the receiver then sees it).
		end := "\r\n"
		if !bytes.HasSuffix(h.raw, []byte("\n")) {
			end = "\r\n\r\n"
		}
		if _, err := io.WriteString(w, end); err != nil {
			closeAll()
			return nil, d, fmt.Errorf("dkim: hashing the header: %w", err)
		}
	}
	if _, err := br.WriteTo(taggedWriter{w}); err != nil {
		closeAll()
		var we *writeError
		if errors.As(err, &we) {
			return nil, d, fmt.Errorf("dkim: hashing the body: %w", err)
		}
		return nil, d, err // reading the message: the caller's error, kept as it is
	}
	var fields bytes.Buffer
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			for _, rest := range signers[i+1:] {
				_ = rest.Close()
			}
			return nil, d, fmt.Errorf("dkim: signing with %s: %w", d.Keys[i].Name(), err)
		}
		fields.WriteString(sg.Signature())
	}
	return fields.Bytes(), d, nil
}

// newSigners starts one go-msgauth signer per key, each signing the fields of h= hkeys.
func (s *Signer) newSigners(keys []*Key, hkeys []string) ([]*msgauth.Signer, error) {
	var out []*msgauth.Signer
	for _, k := range keys {
		var sg *msgauth.Signer
		err := errors.New("the private key was not read")
		if k.Signer != nil {
			sg, err = msgauth.NewSigner(&msgauth.SignOptions{
				Domain: k.Domain, Selector: k.Selector, Signer: k.Signer, Hash: crypto.SHA256,
				// Both set: go-msgauth defaults each to "simple" (RFC 6376 3.5).
				HeaderCanonicalization: s.header, BodyCanonicalization: s.body,
				HeaderKeys: hkeys,
			})
		}
		if err != nil {
			for _, started := range out {
				_ = started.Close()
			}
			return nil, fmt.Errorf("dkim key %s: %w", k.Name(), err)
		}
		out = append(out, sg)
	}
	return out, nil
}

// taggedWriter marks its errors as writeErrors.
type taggedWriter struct{ w io.Writer }

func (t taggedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// writeError marks an error of the signers' side of a copy, as opposed to the message reader's.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
