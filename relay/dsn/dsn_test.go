package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var (
	now     = time.Date(2026, 11, 27, 3, 25, 21, 0, time.UTC)
	arrival = now.Add(-26 * time.Hour)
)

const origHeaders = "Received: from pc1 (pc1 [192.0.2.7]) by relay.example.net (ptrelay) with ESMTP id s1;\r\n" +
	"\tThu, 26 Nov 2026 01:25:21 +0000\r\n" +
	"From: Alice <alice@corp.example>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: Quarterly figures\r\n" +
	"Message-ID: <q1@corp.example>\r\n" +
	"\r\n"

func failedOne() Report {
	return Report{
		ReportingMTA: "relay.example.net", Kind: Failed, Sender: "alice@corp.example",
		Arrival: arrival, Now: now, MessageID: "01JQ3ZK5V2",
		Recipients: []RecipientStatus{{
			Recipient: "bob@example.org", Action: "failed", Status: "5.1.1", RemoteMTA: "mx1.example.org",
			Diagnostic:  "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
			LastAttempt: now.Add(-time.Minute),
		}},
		OriginalHeaders: []byte(origHeaders),
	}
}

func failedTwo() Report {
	r := failedOne()
	r.EnvID = "QQ314159"
	r.Recipients = []RecipientStatus{
		{Recipient: "bob@example.org", ORcpt: "rfc822;Bob@Example.org", Action: "failed", Status: "5.1.1",
			RemoteMTA: "mx1.example.org", Diagnostic: "550 5.1.1 user unknown", LastAttempt: now.Add(-time.Minute)},
		{Recipient: "carol@example.com", ORcpt: "carol@example.com", Action: "failed", Status: "5.7.26",
			RemoteMTA: "mx.example.com", Diagnostic: "550 5.7.26 Unauthenticated email from corp.example is not " +
				"accepted due to domain's DMARC policy. Please contact the administrator of corp.example domain.",
			LastAttempt: now.Add(-time.Minute),
			Fix: "Ask your mail administrator to add the relay to the SPF record of corp.example and to sign mail " +
				"with DKIM; the domain's DMARC policy makes receivers refuse unauthenticated mail."},
	}
	return r
}

func delayed() Report {
	r := failedOne()
	r.Kind = Delayed
	r.Recipients = []RecipientStatus{{
		Recipient: "bob@example.org", Action: "delayed", Status: "4.4.1", RemoteMTA: "mx1.example.org",
		Diagnostic: "451 4.4.1 connection timed out", LastAttempt: now.Add(-time.Minute),
		WillRetryUntil: arrival.Add(5 * 24 * time.Hour),
	}}
	return r
}

func TestBuild_Golden(t *testing.T) {
	cases := []struct {
		file string
		r    Report
	}{
		{"failed-one.golden", failedOne()},
		{"failed-two-orcpt-envid.golden", failedTwo()},
		{"delayed.golden", delayed()},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Build(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("output differs from %s (run go test -update after checking the change):\n%s", path, got)
			}
			checkWire(t, got)
		})
	}
}

// checkWire checks the transport rules: CRLF only, lines within 998 octets, 7-bit.
func checkWire(t *testing.T, msg []byte) {
	t.Helper()
	if bytes.Count(msg, []byte("\r")) != bytes.Count(msg, []byte("\r\n")) ||
		bytes.Count(msg, []byte("\n")) != bytes.Count(msg, []byte("\r\n")) {
		t.Fatal("a bare CR or LF in the output")
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Fatal("the message does not end with CRLF")
	}
	for i, l := range bytes.Split(msg, []byte("\r\n")) {
		if len(l) > 998 {
			t.Fatalf("line %d is %d octets", i+1, len(l))
		}
		for _, c := range l {
			if c >= 0x80 || c == 0 {
				t.Fatalf("line %d %q is not 7-bit", i+1, l)
			}
		}
	}
}

// parsed is a DSN read back the way a mail client reads it.
type parsed struct {
	header   mail.Header
	parts    []*multipart.Part
	bodies   []string
	perMsg   textproto.MIMEHeader
	perRcpt  []textproto.MIMEHeader
	origHead string
}

func parse(t *testing.T, msg []byte) parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p := parsed{header: m.Header}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart() // raw: quoted-printable stays as sent, decoded below on purpose
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		p.parts = append(p.parts, part)
		p.bodies = append(p.bodies, string(body))
	}
	if len(p.parts) < 2 {
		t.Fatalf("%d parts", len(p.parts))
	}
	// message/delivery-status: blocks of header-like fields separated by empty lines (RFC 3464 2.1).
	tr := textproto.NewReader(bufio.NewReader(strings.NewReader(p.bodies[1] + "\r\n")))
	if p.perMsg, err = tr.ReadMIMEHeader(); err != nil {
		t.Fatalf("per-message fields: %v", err)
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			p.perRcpt = append(p.perRcpt, h)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("per-recipient fields: %v", err)
		}
	}
	if len(p.parts) > 2 {
		p.origHead = p.bodies[2]
		if p.parts[2].Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(p.origHead)))
			if err != nil {
				t.Fatal(err)
			}
			p.origHead = string(b)
		}
	}
	return p
}

func TestBuild_ParseBack_Failed(t *testing.T) {
	msg, err := Build(failedTwo())
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, msg)
	wantHeader := map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@relay.example.net>",
		"To":             "<alice@corp.example>",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
		"Date":           "Fri, 27 Nov 2026 03:25:21 +0000",
	}
	for k, v := range wantHeader {
		if got := p.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if id := p.header.Get("Message-ID"); !strings.HasSuffix(id, ".dsn@relay.example.net>") {
		t.Errorf("Message-ID %q", id)
	}
	wantTypes := []string{"text/plain; charset=us-ascii", "message/delivery-status", "text/rfc822-headers"}
	if len(p.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(p.parts))
	}
	for i, w := range wantTypes {
		if got := p.parts[i].Header.Get("Content-Type"); got != w {
			t.Errorf("part %d: Content-Type %q, want %q", i+1, got, w)
		}
	}

	if got := p.perMsg.Get("Reporting-MTA"); got != "dns; relay.example.net" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if got := p.perMsg.Get("Original-Envelope-Id"); got != "QQ314159" {
		t.Errorf("Original-Envelope-Id %q", got)
	}
	if got := p.perMsg.Get("Arrival-Date"); got != "Thu, 26 Nov 2026 01:25:21 +0000" {
		t.Errorf("Arrival-Date %q", got)
	}
	if len(p.perRcpt) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.perRcpt))
	}
	want := []map[string]string{
		{"Original-Recipient": "rfc822; Bob@Example.org", "Final-Recipient": "rfc822; bob@example.org",
			"Action": "failed", "Status": "5.1.1", "Remote-MTA": "dns; mx1.example.org",
			"Diagnostic-Code": "smtp; 550 5.1.1 user unknown", "Last-Attempt-Date": "Fri, 27 Nov 2026 03:24:21 +0000"},
		{"Original-Recipient": "rfc822; carol@example.com", "Final-Recipient": "rfc822; carol@example.com",
			"Action": "failed", "Status": "5.7.26", "Remote-MTA": "dns; mx.example.com"},
	}
	for i, w := range want {
		for k, v := range w {
			if got := p.perRcpt[i].Get(k); got != v {
				t.Errorf("recipient %d %s: %q, want %q", i+1, k, got, v)
			}
		}
		if p.perRcpt[i].Get("Will-Retry-Until") != "" {
			t.Errorf("recipient %d: Will-Retry-Until in a failure report", i+1)
		}
	}
	// The long DMARC reply was folded; unfolded (textproto joins continuation lines) it is the reply again.
	if got := p.perRcpt[1].Get("Diagnostic-Code"); got != "smtp; "+failedTwo().Recipients[1].Diagnostic {
		t.Errorf("Diagnostic-Code unfolds to %q", got)
	}
	if !strings.Contains(p.bodies[1], "Diagnostic-Code: smtp; 550 5.7.26 Unauthenticated email from corp.example is\r\n\tnot") {
		t.Errorf("the long Diagnostic-Code was not folded:\n%s", p.bodies[1])
	}

	text := p.bodies[0]
	for _, s := range []string{"<bob@example.org>: delivery failed.", "<carol@example.com>: delivery failed.",
		"mx1.example.org replied:", "550 5.1.1 user unknown", "add the relay to the SPF record",
		"check the address for typing mistakes", "01JQ3ZK5V2"} {
		if !strings.Contains(unwrap(text), s) {
			t.Errorf("the explanation does not say %q:\n%s", s, text)
		}
	}
	if p.origHead != strings.TrimSuffix(origHeaders, "\r\n") {
		t.Errorf("original headers part:\n%q\nwant\n%q", p.origHead, strings.TrimSuffix(origHeaders, "\r\n"))
	}
}

// unwrap joins wrapped lines so that phrases can be searched across line breaks.
func unwrap(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestBuild_ParseBack_Delayed(t *testing.T) {
	msg, err := Build(delayed())
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, msg)
	if got := p.header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", got)
	}
	r := p.perRcpt[0]
	for k, v := range map[string]string{"Action": "delayed", "Status": "4.4.1",
		"Will-Retry-Until": "Tue, 01 Dec 2026 01:25:21 +0000", "Diagnostic-Code": "smtp; 451 4.4.1 connection timed out"} {
		if got := r.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if text := unwrap(p.bodies[0]); !strings.Contains(text, "you do not need to send the message again") ||
		!strings.Contains(text, "until Tue, 01 Dec 2026 01:25:21 +0000") {
		t.Errorf("the delay warning does not reassure or give the deadline:\n%s", p.bodies[0])
	}
}

func TestBuild_Defaults(t *testing.T) {
	r := failedOne()
	r.Recipients = []RecipientStatus{{Recipient: "bob@example.org"}}
	r.Arrival = time.Time{}
	r.OriginalHeaders = nil
	r.Postmaster = "postmaster@corp.example"
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, msg)
	p := parse(t, msg)
	if len(p.parts) != 2 {
		t.Errorf("%d parts without original headers, want 2", len(p.parts))
	}
	if got := p.header.Get("From"); got != "Mail Delivery System <postmaster@corp.example>" {
		t.Errorf("From %q", got)
	}
	if p.perMsg.Get("Arrival-Date") != "" || p.perRcpt[0].Get("Remote-MTA") != "" ||
		p.perRcpt[0].Get("Diagnostic-Code") != "" || p.perRcpt[0].Get("Last-Attempt-Date") != "" {
		t.Errorf("optional fields written though unset: %v %v", p.perMsg, p.perRcpt[0])
	}
	if p.perRcpt[0].Get("Action") != "failed" || p.perRcpt[0].Get("Status") != "5.0.0" {
		t.Errorf("defaults for a failure: %v", p.perRcpt[0])
	}
}

func TestBuild_Deterministic(t *testing.T) {
	a, _ := Build(failedOne())
	b, _ := Build(failedOne())
	r := failedOne()
	r.Now = r.Now.Add(time.Second)
	c, _ := Build(r)
	if !bytes.Equal(a, b) {
		t.Error("the same report built twice differs")
	}
	ma, _ := mail.ReadMessage(bytes.NewReader(a))
	mc, _ := mail.ReadMessage(bytes.NewReader(c))
	if ma.Header.Get("Message-ID") == mc.Header.Get("Message-ID") {
		t.Error("two reports at different times share a Message-ID")
	}
}

func TestBuild_LongAndNonASCII(t *testing.T) {
	long := "550 5.7.1 " + strings.Repeat("x", 3000) + " " + strings.Repeat("word ", 400)
	r := failedOne()
	r.EnvID = "env-\xffid"
	r.Recipients = []RecipientStatus{{
		Recipient: "jérôme+tag@exämple.org", ORcpt: "utf-8;jérôme+tag@exämple.org", Status: "5.1.1",
		RemoteMTA: "mx.example.org", Diagnostic: long + "\r\n550 5.7.1 Réessayez plus tard",
		Fix: "Écrivez à l'administrateur.",
	}}
	r.OriginalHeaders = []byte("Subject: Prix réduit\r\nX-Long: " + strings.Repeat("y", 1200) + "\r\n\r\n")
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, msg)
	p := parse(t, msg)
	rc := p.perRcpt[0]
	if got := rc.Get("Final-Recipient"); got != `utf-8; j\x{E9}r\x{F4}me\x{2B}tag@ex\x{E4}mple.org` {
		t.Errorf("Final-Recipient %q", got)
	}
	if got := rc.Get("Original-Recipient"); got != `utf-8; j\x{E9}r\x{F4}me\x{2B}tag@ex\x{E4}mple.org` {
		t.Errorf("Original-Recipient %q", got)
	}
	if got := p.perMsg.Get("Original-Envelope-Id"); got != "env-?id" {
		t.Errorf("Original-Envelope-Id %q", got)
	}
	diag := rc.Get("Diagnostic-Code")
	if !strings.HasSuffix(diag, "550 5.7.1 R?essayez plus tard") || strings.Count(diag, "x") != 3000 {
		t.Errorf("Diagnostic-Code lost text: %q...", diag[:80])
	}
	if p.parts[2].Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("8-bit original headers not sent quoted-printable")
	}
	if want := string(r.OriginalHeaders[:len(r.OriginalHeaders)-2]); p.origHead != want {
		t.Errorf("original headers decode to %q, want %q", p.origHead, want)
	}
	if !strings.Contains(p.bodies[0], "What to do: ?crivez") {
		t.Errorf("Fix not in the text, or not made 7-bit:\n%s", p.bodies[0])
	}
}

func TestBuild_Errors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Report)
	}{
		{"null sender", func(r *Report) { r.Sender = "" }},
		{"no reporting MTA", func(r *Report) { r.ReportingMTA = "" }},
		{"reporting MTA not a host name", func(r *Report) { r.ReportingMTA = "relay example" }},
		{"no kind", func(r *Report) { r.Kind = 0 }},
		{"no recipients", func(r *Report) { r.Recipients = nil }},
		{"empty recipient", func(r *Report) { r.Recipients[0].Recipient = "" }},
		{"recipient with CRLF", func(r *Report) { r.Recipients[0].Recipient = "a@b\r\nBcc: x@y" }},
		{"sender with CRLF", func(r *Report) { r.Sender = "a@b\r\nBcc: x@y" }},
		{"bad status", func(r *Report) { r.Recipients[0].Status = "550" }},
		{"bad action", func(r *Report) { r.Recipients[0].Action = "bounced" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := failedOne()
			tc.mod(&r)
			if msg, err := Build(r); err == nil {
				t.Fatalf("no error, built:\n%s", msg)
			}
		})
	}
	r := failedOne()
	r.Sender = ""
	if _, err := Build(r); !errors.Is(err, ErrNullSender) {
		t.Errorf("null sender: %v, want ErrNullSender", err)
	}
}

func TestBuild_DiagnosticWithoutReply(t *testing.T) {
	r := delayed()
	r.Recipients[0].Diagnostic = "connect to mx1.example.org[192.0.2.25]:25: connection refused"
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, msg)
	if got := p.perRcpt[0].Get("Diagnostic-Code"); got != "X-ptrelay; "+r.Recipients[0].Diagnostic {
		t.Errorf("Diagnostic-Code %q: a failure without a reply is not an smtp diagnostic", got)
	}
	if text := unwrap(p.bodies[0]); !strings.Contains(text, "The last attempt failed with: connect to") ||
		strings.Contains(text, "replied") {
		t.Errorf("the text claims a reply that never came:\n%s", p.bodies[0])
	}
}
