package dsn

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// softLimit is where lines are folded or wrapped when words allow (RFC 5322 2.1.1: 78); hardLimit keeps a
// single word from making a line over 998 octets.
const (
	softLimit = 78
	hardLimit = 900
)

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// asciiText makes one line of 7-bit text: line breaks and other controls become spaces (a multi-line SMTP
// reply reads as one line, as Postfix writes it), runs of blanks collapse, and each non-ASCII character, or
// invalid byte, becomes '?'. There is no standard 7-bit encoding for these fields (RFC 3464 text is ASCII;
// RFC 2047 encoded-words are not allowed in them), so '?' says "something was here" without breaking them.
func asciiText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r >= 0x80:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// addressValue renders an address field value "type; address" (RFC 3464 2.3.1-2.3.2). An address that is not
// printable ASCII is given the RFC 6533 "utf-8" type in its 7-bit form: non-ASCII characters and the
// characters '+', '=', '\' as \x{HEX} (utf-8-addr-xtext).
func addressValue(typ, addr string) string {
	if isPrintableASCII(addr) && strings.ToLower(typ) != "utf-8" {
		return typ + "; " + addr
	}
	return "utf-8; " + escapeAddr(addr)
}

func escapeAddr(addr string) string {
	var b strings.Builder
	for _, r := range addr {
		if r > 0x20 && r < 0x7f && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		if r == utf8.RuneError {
			r = 0xFFFD
		}
		fmt.Fprintf(&b, `\x{%02X}`, r)
	}
	return b.String()
}

// textAddr shows an address in the readable part: as is when ASCII, else in the escaped form.
func textAddr(addr string) string {
	if isPrintableASCII(addr) {
		return addr
	}
	return escapeAddr(addr)
}

// originalRecipient splits a DSN ORCPT value "type;address" (RFC 3461 4.2), or takes a bare address as rfc822.
func originalRecipient(orcpt string) (typ, addr string) {
	if t, a, ok := strings.Cut(orcpt, ";"); ok && isAddrType(t) {
		return strings.TrimSpace(t), strings.TrimSpace(a)
	}
	return "rfc822", strings.TrimSpace(orcpt)
}

// isAddrType accepts an RFC 3461 addr-type: an atom such as "rfc822" or "utf-8".
func isAddrType(t string) bool {
	t = strings.TrimSpace(t)
	if t == "" {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// field renders "Name: value\r\n" folded at blanks (RFC 5322 2.2.3 folding, which RFC 3464 fields follow).
// A word longer than hardLimit is cut into pieces on continuation lines: unfolding then shows a blank inside
// it, the price of keeping every line within 998 octets.
func field(name, value string) string {
	var b strings.Builder
	line := name + ":"
	for _, w := range splitLong(strings.Fields(value)) {
		if len(line) > len(name)+1 && len(line)+1+len(w) > softLimit {
			b.WriteString(line + "\r\n")
			line = "\t" + w
			continue
		}
		line += " " + w
	}
	b.WriteString(line + "\r\n")
	return b.String()
}

func splitLong(words []string) []string {
	var out []string
	for _, w := range words {
		for len(w) > hardLimit {
			out = append(out, w[:hardLimit])
			w = w[hardLimit:]
		}
		out = append(out, w)
	}
	return out
}

// wrap word-wraps one paragraph of 7-bit text to softLimit columns, every line starting with indent, and
// ends each line with CRLF.
func wrap(indent, s string) string {
	var b strings.Builder
	line := ""
	for _, w := range splitLong(strings.Fields(s)) {
		if line != "" && len(indent)+len(line)+1+len(w) > softLimit-2 {
			b.WriteString(indent + line + "\r\n")
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		b.WriteString(indent + line + "\r\n")
	}
	return b.String()
}
