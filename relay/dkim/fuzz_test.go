package dkim

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzSign feeds the signer messages as clients may send them: whatever it signs must verify (go-msgauth, the
// published record), and what it does not sign must say why. The From: parsing, the header reading and h= are
// the untrusted-input parts.
func FuzzSign(f *testing.F) {
	for _, seed := range []string{
		baseMsg,
		"From: a@contoso.test\r\n\r\n",
		"From: a@contoso.test\r\nSubject: no body\r\n",
		"From: \"a, b\" <a@contoso.test>\r\nFrom: b@contoso.test\r\nTo: x\r\n\r\n.\r\n..\r\n",
		"From: =?utf-8?b?w6k=?= <x@CONTOSO.test.>\r\n folded: yes\r\n\r\nbody  \r\n\t\r\n",
		"From: a@contoso.test, b@fabrikam.test\r\n\r\nx\r\n",
		"from :a@contoso.test\r\nDate: x\r\nMessage-ID: <y>\r\n\r\n",
		"Subject: x\r\n\r\n",
		"\r\nbody only\r\n",
	} {
		f.Add([]byte(seed), false)
	}
	k := key("contoso.test", "fz", edKeyOnce())
	s := signerWith(k)
	z := zone{}
	rec, err := k.Record()
	if err != nil {
		f.Fatal(err)
	}
	z[k.Name()] = []string{rec.Value}
	f.Fuzz(func(t *testing.T, msg []byte, safe bool) {
		fields, d, err := s.Sign(bytes.NewReader(msg), SignOptions{SafeHeaders: safe})
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !d.Signed() {
			if len(fields) != 0 || d.Reason == "" || d.String() == "" {
				t.Fatalf("unsigned without a reason: %+v, %q", d, fields)
			}
			return
		}
		if d.Domain != "contoso.test" && !d.Own {
			t.Fatalf("signed for %q", d.Domain)
		}
		signed := append(append([]byte(nil), fields...), msg...)
		if !bytes.Contains(msg, []byte("\n\r\n")) && !bytes.Contains(msg, []byte("\n\n")) && !bytes.HasPrefix(msg, []byte("\r\n")) {
			// go-msgauth's verifier needs the empty line; what goes on the wire ends its last line with CRLF.
			if !bytes.HasSuffix(signed, []byte("\n")) {
				signed = append(signed, "\r\n"...)
			}
			signed = append(signed, "\r\n"...)
		}
		if !bytes.HasSuffix(fields, []byte("\r\n")) || strings.Count(string(fields), "DKIM-Signature:") != 1 {
			t.Fatalf("fields %q", fields)
		}
		errs := verify(t, string(signed), z)
		if len(errs) == 0 {
			t.Fatal("no signature found")
		}
		if errs[0] != nil {
			t.Fatalf("own signature does not verify: %v\n%q", errs[0], signed)
		}
	})
}
