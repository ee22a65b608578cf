package alerts

import (
	"encoding/json"
	"maps"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// MarkerHeader marks alert mail, so that it is recognised wherever it goes (and never counted by the queue
// conditions, and never answered by an out-of-office reply: see renderMail).
const MarkerHeader = "X-Ptrelay-Alert"

// forChannel returns the notices of r that go to channel.
func forChannel(r Round, channel string) []Notice {
	var out []Notice
	for _, n := range r.Notices {
		if n.Only == "" || n.Only == channel {
			out = append(out, n)
		}
	}
	return out
}

func prefix(k Kind) string {
	switch k {
	case KindReminder:
		return "still: "
	case KindResolved:
		return "resolved: "
	case KindFlapping:
		return "flapping: "
	}
	return ""
}

// subjectLine is the mail subject of a round: the most severe notice, and how many more there are.
func subjectLine(ns []Notice) string {
	s := "ptrelay: " + prefix(ns[0].Kind) + ns[0].Summary
	if len(ns) > 1 {
		s += " (and " + itoa(len(ns)-1) + " more)"
	}
	return clean(s, 250)
}

// MailMessage is an alert mail ready for SMTP: headers and a plain-text body, CRLF line ends.
type MailMessage struct {
	ID      string // Message-ID without brackets
	Subject string
	Data    []byte
}

// renderMail builds the alert mail of ns. From is ptrelay@hostname; the envelope sender is <> (set by the
// sender), so nothing ever bounces back to ptrelay. Auto-Submitted (RFC 3834) and Exchange's
// X-Auto-Response-Suppress keep out-of-office replies away; MarkerHeader tags it for filters.
func renderMail(ns []Notice, hostname string, to []string, now time.Time, loc *time.Location) MailMessage {
	id := strings.TrimPrefix(ns[0].ID, "msg_") + "@" + hostname
	subject := subjectLine(ns)
	var b strings.Builder
	h := func(k, v string) { b.WriteString(fold(k+": "+v) + "\r\n") }
	h("From", (&mail.Address{Name: "ptrelay on " + hostname, Address: "ptrelay@" + hostname}).String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", subject))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+">")
	h("Auto-Submitted", "auto-generated")
	h("X-Auto-Response-Suppress", "All")
	h(MarkerHeader, "1")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	body := mailBody(ns, hostname, now, loc)
	if isASCII(body) {
		h("Content-Transfer-Encoding", "7bit")
	} else {
		h("Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return MailMessage{ID: id, Subject: subject, Data: []byte(b.String())}
}

func mailBody(ns []Notice, hostname string, now time.Time, loc *time.Location) string {
	var b strings.Builder
	if len(ns) > 1 {
		b.WriteString(itoa(len(ns)) + " notices from ptrelay on " + hostname + ", most severe first.\n\n")
	}
	for i, n := range ns {
		if i > 0 {
			b.WriteString("\n" + strings.Repeat("-", 72) + "\n\n")
		}
		writeNotice(&b, n, now, loc)
	}
	b.WriteString("\n-- \nMore: run `ptrelay status` and `ptrelay alerts list` on " + hostname + ".\n")
	b.WriteString("ptrelay sends these notices as set in [alerts] of its configuration.\n")
	return b.String()
}

func writeNotice(b *strings.Builder, n Notice, now time.Time, loc *time.Location) {
	head := "[" + strings.ToUpper(n.Severity.String()) + "] " + prefix(n.Kind) + n.Summary
	switch {
	case n.Kind == KindDigest || n.Kind == KindTest:
		head = n.Summary
	case n.Status == StatusResolved:
		head = "[RESOLVED] " + n.Summary
	}
	b.WriteString(wrap(head, 72) + "\n")
	switch n.Kind {
	case KindTest:
	case KindDigest:
		b.WriteString("Period: " + stamp(n.Since, loc) + " to " + stamp(n.At, loc) + "\n\n")
		for _, l := range n.Lines {
			b.WriteString(l + "\n")
		}
		return
	case KindResolved:
		b.WriteString("Resolved at " + stamp(n.At, loc) + ".\n")
	default:
		if now.Sub(n.Since) < time.Minute {
			b.WriteString("Since " + stamp(n.Since, loc) + ".\n")
		} else {
			b.WriteString("Since " + stamp(n.Since, loc) + " (" + span(now.Sub(n.Since)) + ").\n")
		}
	}
	if n.Folded > 0 {
		b.WriteString("(" + itoa(n.Folded) + " earlier " + plural(n.Folded, "change") + " of this condition folded into this notice.)\n")
	}
	for _, p := range []struct{ label, text string }{
		{"What happened: ", n.What}, {"What ptrelay does: ", n.Doing}, {"What to do: ", n.Fix},
	} {
		if p.text != "" {
			b.WriteString("\n" + wrap(p.label+p.text, 72) + "\n")
		}
	}
}

// fold breaks a header line at spaces so that its lines stay within 78 characters where a space allows it
// (RFC 5322 2.2.3); the encoded words of a long non-ASCII subject are separated by spaces.
func fold(line string) string {
	var out strings.Builder
	for len(line) > 78 {
		i := strings.LastIndexByte(line[:78], ' ')
		if i <= 0 {
			if i = strings.IndexByte(line[1:], ' ') + 1; i <= 0 {
				break
			}
		}
		out.WriteString(line[:i] + "\r\n")
		line = line[i:] // the space starts the continuation line
	}
	out.WriteString(line)
	return out.String()
}

// maxWord is the longest run of text without a space that wrap keeps on one line; longer ones are cut, so no
// line comes near RFC 5322's 998 bytes.
const maxWord = 200

// wrap breaks text into lines of at most width columns at spaces (a longer word stays whole up to maxWord).
func wrap(text string, width int) string {
	var out, line strings.Builder
	n := 0
	var words []string
	for _, w := range strings.Fields(text) {
		for r := []rune(w); len(r) > 0; {
			k := min(len(r), maxWord)
			words = append(words, string(r[:k]))
			r = r[k:]
		}
	}
	for _, w := range words {
		l := len([]rune(w))
		if n > 0 && n+1+l > width {
			out.WriteString(line.String() + "\n")
			line.Reset()
			n = 0
		}
		if n > 0 {
			line.WriteByte(' ')
			n++
		}
		line.WriteString(w)
		n += l
	}
	out.WriteString(line.String())
	return out.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Payload is the webhook body (Standard Webhooks: type, timestamp, data), plus a ready "text" for chat tools
// (Slack and Mattermost show it as the message).
type Payload struct {
	Type      string      `json:"type"`
	Timestamp string      `json:"timestamp"`
	Data      PayloadData `json:"data"`
	Text      string      `json:"text"`
}

// PayloadData is the payload's data object.
type PayloadData struct {
	Status   Status            `json:"status"`
	Severity Severity          `json:"severity"`
	Summary  string            `json:"summary"`
	Details  map[string]string `json:"details"`
	Host     string            `json:"host"`
	Since    string            `json:"since"`
}

// renderPayload builds the JSON body of one notice. The details carry the event's facts plus the words of the
// mail (what, doing, fix) and the condition's subject and kind, so a receiver needs nothing else.
func renderPayload(n Notice, hostname string) []byte {
	d := maps.Clone(n.Details)
	if d == nil {
		d = map[string]string{}
	}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	set("kind", string(n.Kind))
	set("subject", n.Subject)
	set("what", n.What)
	set("doing", n.Doing)
	set("fix", n.Fix)
	if n.Folded > 0 {
		d["folded"] = itoa(n.Folded)
	}
	if n.Kind == KindDigest {
		d["report"] = strings.Join(n.Lines, "\n")
	}
	p := Payload{
		Type:      "ptrelay." + string(n.Event),
		Timestamp: n.At.UTC().Format(time.RFC3339),
		Data: PayloadData{Status: n.Status, Severity: n.Severity, Summary: n.Summary, Details: d, Host: hostname,
			Since: n.Since.UTC().Format(time.RFC3339)},
		Text: chatText(n, hostname),
	}
	b, _ := json.Marshal(p) // plain strings and maps: cannot fail
	return b
}

// chatText is the one-glance form: severity, host, summary, and the fix on a second line.
func chatText(n Notice, hostname string) string {
	level := strings.ToUpper(n.Severity.String())
	switch {
	case n.Kind == KindDigest:
		level = "DIGEST"
	case n.Kind == KindTest:
		level = "TEST"
	case n.Status == StatusResolved:
		level = "RESOLVED"
	}
	t := "[ptrelay] " + level + " " + hostname + ": " + prefix(n.Kind) + n.Summary
	if n.Fix != "" {
		t += "\nWhat to do: " + n.Fix
	}
	if n.Kind == KindDigest {
		t += "\n" + strings.Join(n.Lines, "\n")
	}
	return t
}
