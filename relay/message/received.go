package message

import (
	"net/netip"
	"strings"
	"time"
)

// ReceivedParams are the facts of one inbound transaction that go into its Received trace field.
type ReceivedParams struct {
	Helo       string     // the client's EHLO/HELO argument
	HeloOnly   bool       // the client said HELO, not EHLO: protocol "SMTP"
	RDNS       string     // the client's verified reverse DNS name; "" prints "unknown"
	IP         netip.Addr // the client's address
	Hostname   string     // our own name (config hostname)
	TLS        bool       // the transaction ran over TLS
	Auth       bool       // the client authenticated
	ID         string     // the session id: the queue ID does not exist before the commit
	Recipients []string   // envelope recipients; named in "for" only when there is exactly one
	Now        time.Time
}

// ReceivedValue builds the value of a Received field (what follows "Received: ", unfolded) in the form of
// RFC 5321 4.4 with the protocol words of RFC 3848:
//
//	from <helo> (<rdns or unknown> [<ip>]) by <hostname> (ptrelay) with <ESMTP|ESMTPS|ESMTPA|ESMTPSA>
//	id <session>[ for <rcpt>]; <date>
//
// Client-supplied words are made safe for a header: bytes outside printable ASCII, and the characters that
// would end a comment or the clause list ("()\;"), become '?'. The recipient is named only when there is
// exactly one (naming several would tell each recipient about the others, as Postfix avoids too) and it is
// printable ASCII (a header must stay 7-bit in a message that may not be SMTPUTF8).
func ReceivedValue(p ReceivedParams) string {
	var b strings.Builder
	b.WriteString("from ")
	b.WriteString(orUnknown(safeWord(p.Helo)))
	b.WriteString(" (")
	b.WriteString(orUnknown(safeWord(p.RDNS)))
	if p.IP.IsValid() {
		b.WriteString(" [")
		b.WriteString(addressLiteral(p.IP))
		b.WriteString("]")
	}
	b.WriteString(") by ")
	b.WriteString(orUnknown(safeWord(p.Hostname)))
	b.WriteString(" (ptrelay) with ")
	b.WriteString(protocol(p))
	if id := safeWord(p.ID); id != "" {
		b.WriteString(" id ")
		b.WriteString(id)
	}
	if len(p.Recipients) == 1 && printableASCII(p.Recipients[0]) && !strings.ContainsAny(p.Recipients[0], "<>") {
		b.WriteString(" for <")
		b.WriteString(p.Recipients[0])
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(p.Now.Format(time.RFC1123Z))
	return b.String()
}

// protocol returns the "with" word: RFC 5321 SMTP/ESMTP, RFC 3848 ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
func protocol(p ReceivedParams) string {
	if p.HeloOnly && !p.TLS && !p.Auth {
		return "SMTP" // STARTTLS and AUTH need EHLO, so HELO with either cannot happen; keep ESMTP* then
	}
	w := "ESMTP"
	if p.TLS {
		w += "S"
	}
	if p.Auth {
		w += "A"
	}
	return w
}

// addressLiteral writes an IP as RFC 5321 4.1.3 does: "192.0.2.1" or "IPv6:2001:db8::1".
func addressLiteral(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return "IPv6:" + ip.WithZone("").String()
}

func safeWord(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()\;`, c) >= 0 {
			b[i] = '?'
		}
	}
	return string(b)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// foldField renders "name: value\r\n" folded at spaces so that lines stay within 78 characters where the words
// allow (RFC 5322 2.1.1), with continuation lines starting with a tab. Control characters and non-ASCII bytes in
// value become spaces and '?' so the field can neither end early nor carry 8-bit data. When the field does not
// fit on one line, it also breaks before the clause words "by" and "for", as Postfix lays out its Received.
func foldField(name, value string) string {
	v := []byte(value)
	for i, c := range v {
		switch {
		case c < ' ' || c == 0x7f:
			v[i] = ' '
		case c > 0x7f:
			v[i] = '?'
		}
	}
	words := strings.Fields(string(v))
	line := name + ":"
	if len(line)+1+len(strings.Join(words, " ")) <= 78 {
		if len(words) == 0 {
			return line + "\r\n"
		}
		return line + " " + strings.Join(words, " ") + "\r\n"
	}
	var b strings.Builder
	for i, w := range words {
		clause := i > 0 && (w == "by" || w == "for")
		if i > 0 && (clause || len(line)+1+len(w) > 78) {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = "\t" + w
			continue
		}
		line += " " + w
	}
	b.WriteString(line)
	b.WriteString("\r\n")
	return b.String()
}
