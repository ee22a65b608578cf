package dsn

import (
	"bytes"
	"mime/quotedprintable"
	"strings"
)

// deliveryStatus renders the message/delivery-status body (RFC 3464 2.1): the per-message fields, then one
// block per recipient, blocks separated by an empty line.
func deliveryStatus(r Report) string {
	var b strings.Builder
	b.WriteString(field("Reporting-MTA", "dns; "+r.ReportingMTA))
	if r.EnvID != "" {
		b.WriteString(field("Original-Envelope-Id", asciiText(r.EnvID)))
	}
	if !r.Arrival.IsZero() {
		b.WriteString(field("Arrival-Date", date(r.Arrival)))
	}
	for _, rs := range r.Recipients {
		b.WriteString("\r\n")
		if rs.ORcpt != "" {
			typ, addr := originalRecipient(rs.ORcpt)
			b.WriteString(field("Original-Recipient", addressValue(typ, addr)))
		}
		b.WriteString(field("Final-Recipient", addressValue("rfc822", rs.Recipient)))
		b.WriteString(field("Action", rs.Action))
		b.WriteString(field("Status", rs.Status))
		if rs.RemoteMTA != "" {
			b.WriteString(field("Remote-MTA", "dns; "+asciiText(rs.RemoteMTA)))
		}
		if rs.Diagnostic != "" {
			b.WriteString(field("Diagnostic-Code", diagnosticType(rs.Diagnostic)+"; "+asciiText(rs.Diagnostic)))
		}
		if !rs.LastAttempt.IsZero() {
			b.WriteString(field("Last-Attempt-Date", date(rs.LastAttempt)))
		}
		if rs.Action == "delayed" && !rs.WillRetryUntil.IsZero() {
			b.WriteString(field("Will-Retry-Until", date(rs.WillRetryUntil)))
		}
	}
	return b.String()
}

// originalHeaders prepares the text/rfc822-headers part: CRLF lines, no trailing empty line (the separator
// belongs to the message, not to its header section). It is sent 7bit when it is printable ASCII with lines
// within 998 octets, else quoted-printable (a text type may be: RFC 2045 6.1), which keeps the part 7-bit and
// its lines short while a reader can still decode the exact bytes. "" when there are no headers.
func originalHeaders(h []byte) (string, string) {
	lines := strings.Split(string(h), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return "", ""
	}
	text := strings.Join(lines, "\r\n") + "\r\n"
	plain := true
	for _, l := range lines {
		if len(l) > 998 || !isPrintableASCII(strings.ReplaceAll(l, "\t", " ")) {
			plain = false
			break
		}
	}
	if plain {
		return text, "7bit"
	}
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(text)) // writes to a bytes.Buffer cannot fail
	_ = w.Close()
	out := b.String()
	if !strings.HasSuffix(out, "\r\n") {
		out += "\r\n"
	}
	return out, "quoted-printable"
}

// diagnosticType is "smtp" for a remote's reply (RFC 3464 2.3.6) and, like Postfix's "X-Postfix", our own
// type for a failure that never got a reply (a refused connection, a DNS error).
func diagnosticType(d string) string {
	if isSMTPReply(d) {
		return "smtp"
	}
	return "X-ptrelay"
}

// isSMTPReply reports whether d starts with a reply code, "550 ..." or "550-...".
func isSMTPReply(d string) bool {
	d = strings.TrimSpace(d)
	return len(d) >= 3 && d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[2] >= '0' && d[2] <= '9' &&
		(len(d) == 3 || d[3] == ' ' || d[3] == '-')
}
