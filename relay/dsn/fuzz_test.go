package dsn

import (
	"strings"
	"testing"
)

// FuzzBuild feeds untrusted parts of a report (the remote's reply, the recipient and ORCPT the client gave, the
// original headers, the ENVID) to Build: whatever they hold, the DSN must stay a well-formed 7-bit message with
// short lines whose delivery-status fields read back to what went in.
func FuzzBuild(f *testing.F) {
	f.Add("550 5.1.1 user unknown", "bob@example.org", "rfc822;bob@example.org", []byte(origHeaders), "ENV1", "Fix it.")
	f.Add("451-4.7.1 first\r\n451 4.7.1 second", "jérôme@exämple.org", "utf-8;jérôme@exämple.org",
		[]byte("Subject: caf\xc3\xa9\n\n"), "\xff", "")
	f.Add(strings.Repeat("x", 2000), "a+b=c\\d@x", "", []byte("X: "+strings.Repeat("y", 1100)+"\r\n"), "", "\x00")
	f.Fuzz(func(t *testing.T, diag, rcpt, orcpt string, headers []byte, envid, fix string) {
		r := failedOne()
		r.EnvID = envid
		r.OriginalHeaders = headers
		r.Recipients = []RecipientStatus{{Recipient: rcpt, ORcpt: orcpt, Status: "5.1.1", Diagnostic: diag, Fix: fix,
			RemoteMTA: "mx.example.org"}}
		msg, err := Build(r)
		if err != nil {
			if rcpt != "" && !hasControl(rcpt) {
				t.Fatalf("recipient %q refused: %v", rcpt, err)
			}
			return
		}
		checkWire(t, msg)
		p := parse(t, msg)
		if len(p.perRcpt) != 1 {
			t.Fatalf("%d recipient blocks", len(p.perRcpt))
		}
		if want := asciiText(diag); want != "" {
			got := p.perRcpt[0].Get("Diagnostic-Code")
			want = diagnosticType(diag) + "; " + want
			// Unfolding gives the text back, with a blank inside each word cut at hardLimit.
			if strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
				t.Fatalf("Diagnostic-Code reads back as %q, want %q", got, want)
			}
		}
		if got := p.perRcpt[0].Get("Final-Recipient"); got != addressValue("rfc822", rcpt) {
			t.Fatalf("Final-Recipient reads back as %q, want %q", got, addressValue("rfc822", rcpt))
		}
	})
}
