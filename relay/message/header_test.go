package message

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 27, 3, 25, 21, 0, time.UTC)

const testDate = "Fri, 27 Nov 2026 03:25:21 +0000"

var midRE = regexp.MustCompile(`Message-ID: <[0-9a-v]{24}@relay\.test>\r\n`)

// runCompleter writes chunks through a HeaderCompleter and returns the output with a generated Message-ID
// replaced by "Message-ID: <ID>" so tables can spell it.
func runCompleter(t *testing.T, received string, chunks [][]byte) string {
	t.Helper()
	var sink bytes.Buffer
	h := NewHeaderCompleter(&sink, Trace{Received: received, Hostname: "relay.test", Now: testNow})
	for _, c := range chunks {
		if n, err := h.Write(c); err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return midRE.ReplaceAllString(sink.String(), "Message-ID: <ID>\r\n")
}

func TestHeaderCompleter_Table(t *testing.T) {
	const r = "Received: x\r\n"
	const mid = "Message-ID: <ID>\r\n"
	const date = "Date: " + testDate + "\r\n"
	cases := []struct{ name, in, want string }{
		{"empty message", "", r + mid + date},
		{"both present",
			"Message-ID: <a@b>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n",
			r + "Message-ID: <a@b>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n"},
		{"both missing", "Subject: s\r\n\r\nbody\r\n", r + "Subject: s\r\n" + mid + date + "\r\nbody\r\n"},
		{"date missing", "message-id: <a@b>\r\n\r\nb\r\n", r + "message-id: <a@b>\r\n" + date + "\r\nb\r\n"},
		{"message-id missing, names any case", "DATE: x\r\nSubject: s\r\n\r\n", r + "DATE: x\r\nSubject: s\r\n" + mid + "\r\n"},
		{"resent fields do not count", "Resent-Date: x\r\nResent-Message-ID: <r@b>\r\n\r\nb",
			r + "Resent-Date: x\r\nResent-Message-ID: <r@b>\r\n" + mid + date + "\r\nb"},
		{"blank before colon (obsolete syntax)", "Date : x\r\nMessage-ID\t: <a@b>\r\n\r\nb",
			r + "Date : x\r\nMessage-ID\t: <a@b>\r\n\r\nb"},
		{"continuation lines", "Subject: a\r\n long\r\n\tlonger\r\nTo: t\r\n\r\nb\r\n",
			r + "Subject: a\r\n long\r\n\tlonger\r\nTo: t\r\n" + mid + date + "\r\nb\r\n"},
		{"continuation that looks like a field", "Subject: a\r\n Date: no\r\n\r\nb",
			r + "Subject: a\r\n Date: no\r\n" + mid + date + "\r\nb"},
		{"no header, body only", "Hello world\r\nbye\r\n", r + mid + date + "\r\nHello world\r\nbye\r\n"},
		{"starts with empty line", "\r\nbody\r\n", r + mid + date + "\r\nbody\r\n"},
		{"starts with a blank (continuation of nothing)", " Subject: x\r\n\r\nb", r + mid + date + "\r\n Subject: x\r\n\r\nb"},
		{"header without separator then body", "Subject: s\r\nHello\r\n", r + "Subject: s\r\n" + mid + date + "\r\nHello\r\n"},
		{"mbox From line ends the header", "Subject: s\r\nFrom x\r\n", r + "Subject: s\r\n" + mid + date + "\r\nFrom x\r\n"},
		{"headers only", "Subject: s\r\n", r + "Subject: s\r\n" + mid + date},
		{"last header line without CRLF", "Subject: s", r + "Subject: s\r\n" + mid + date},
		{"last continuation without CRLF", "Subject: s\r\n more", r + "Subject: s\r\n more\r\n" + mid + date},
		{"unterminated non-header", "Hello", r + mid + date + "\r\nHello"},
		{"body lines looking like fields stay body", "Subject: s\r\n\r\nDate: 1\r\n", r + "Subject: s\r\n" + mid + date + "\r\nDate: 1\r\n"},
		{"empty field name", ": x\r\n\r\n", r + mid + date + "\r\n: x\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, ch := range chunkings([]byte(tc.in)) {
				if got := runCompleter(t, "x", ch); got != tc.want {
					t.Fatalf("chunks %q:\n got %q\nwant %q", ch, got, tc.want)
				}
			}
		})
	}
}

func TestHeaderCompleter_GeneratedMessageIDsDiffer(t *testing.T) {
	var a, b bytes.Buffer
	for _, w := range []*bytes.Buffer{&a, &b} {
		h := NewHeaderCompleter(w, Trace{Received: "x", Hostname: "relay.test", Now: testNow})
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ma, mb := midRE.FindString(a.String()), midRE.FindString(b.String())
	if ma == "" || mb == "" || ma == mb {
		t.Fatalf("Message-IDs %q and %q: want two different generated ones", ma, mb)
	}
}

func TestHeaderCompleter_Overflow(t *testing.T) {
	// A header section that never ends within MaxHeaderBytes: Received is prepended, nothing else is added,
	// and everything after streams through untouched.
	var in bytes.Buffer
	for in.Len() <= MaxHeaderBytes {
		in.WriteString("X-Filler: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n")
	}
	in.WriteString("\r\nbody\r\n")
	// However the input is cut into writes, the outcome depends only on the first MaxHeaderBytes bytes.
	for _, size := range []int{in.Len(), 1000, 7} {
		var sink bytes.Buffer
		h := NewHeaderCompleter(&sink, Trace{Received: "x", Hostname: "relay.test", Now: testNow})
		src := in.Bytes()
		for len(src) > 0 {
			n := min(size, len(src))
			if _, err := h.Write(src[:n]); err != nil {
				t.Fatal(err)
			}
			src = src[n:]
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if want := "Received: x\r\n" + in.String(); sink.String() != want {
			t.Fatalf("writes of %d: got %d bytes, want %d (Received + input unchanged)", size, sink.Len(), len(want))
		}
	}
}

func TestHeaderCompleter_StreamsTheBody(t *testing.T) {
	// Once the header section has ended, a Write reaches dst at once: the body is not buffered.
	var sink bytes.Buffer
	h := NewHeaderCompleter(&sink, Trace{Received: "x", Hostname: "relay.test", Now: testNow})
	if _, err := h.Write([]byte("Subject: s\r\nMessage-ID: <a@b>\r\nDate: d\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	before := sink.Len()
	if _, err := h.Write([]byte("body line\r\n")); err != nil {
		t.Fatal(err)
	}
	if sink.Len()-before != len("body line\r\n") {
		t.Fatalf("a body write of 11 bytes put %d bytes in dst", sink.Len()-before)
	}
}

func TestHeaderCompleter_DstErrorSticks(t *testing.T) {
	h := NewHeaderCompleter(&failWriter{}, Trace{Received: "x", Hostname: "relay.test", Now: testNow})
	if _, err := h.Write([]byte("Subject: s\r\n\r\nb")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Write: %v", err)
	}
	if _, err := h.Write([]byte("more")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("second Write: %v", err)
	}
	if err := h.Close(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Close: %v", err)
	}
}

func TestHeaderCompleter_FoldsReceived(t *testing.T) {
	v := ReceivedValue(ReceivedParams{
		Helo: "mail.example.com", RDNS: "mail.example.com", IP: mustAddr("192.0.2.1"), Hostname: "relay.example.net",
		TLS: true, ID: "S01JXYZ", Recipients: []string{"bob@example.org"}, Now: testNow,
	})
	got := runCompleter(t, v, [][]byte{[]byte("Subject: s\r\n\r\n")})
	want := "Received: from mail.example.com (mail.example.com [192.0.2.1])\r\n" +
		"\tby relay.example.net (ptrelay) with ESMTPS id S01JXYZ\r\n" +
		"\tfor <bob@example.org>; " + testDate + "\r\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got\n%s\nwant prefix\n%s", got, want)
	}
}

func TestHeaderCompleter_ReceivedCannotInjectLines(t *testing.T) {
	got := runCompleter(t, "a\r\nBcc: evil@example.com\x00\xff", [][]byte{[]byte("Subject: s\r\n\r\n")})
	if !strings.HasPrefix(got, "Received: a Bcc: evil@example.com ?\r\nSubject: s\r\n") {
		t.Fatalf("got %q", got)
	}
}
