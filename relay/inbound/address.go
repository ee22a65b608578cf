package inbound

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// An address is only ever relayed, never interpreted: percent hacks (a%b@c), bang paths (a!b@c), quoted local
// parts with @ ("a@b"@c) and address literals (a@[192.0.2.1]) are plain mailboxes of the domain after the last
// @, relayed or denied by the same access rule. go-smtp has already dropped any source route (@a,@b:) and
// unquoted a quoted local part; checkMailbox validates what is left and re-quotes the local part when it needs it.
// A mailbox without "@domain" never gets here: go-smtp's parser answers it "501 5.5.2 Was expecting MAIL arg
// syntax of FROM:<address>" (RCPT: "TO:<address>") itself.

var (
	errNoDomain    = errors.New("a domain is required")
	errLocalPart   = errors.New("bad local part")
	errDomain      = errors.New("bad domain")
	errNeedsUTF8   = errors.New("non-ASCII address without SMTPUTF8")
	errAddrTooLong = errors.New("address too long")
)

// checkMailbox returns the address in canonical form (local part quoted when it is not a dot-string).
func checkMailbox(addr string, utf8OK bool) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", errNoDomain
	}
	local, domain := addr[:at], addr[at+1:]
	if len(addr) > 254+2 || len(local) > 64 {
		return "", errAddrTooLong
	}
	if !utf8OK && (!isASCII(local) || !isASCII(domain)) {
		return "", errNeedsUTF8
	}
	if !utf8.ValidString(addr) {
		return "", errLocalPart
	}
	if err := checkDomain(domain); err != nil {
		return "", err
	}
	if local == "" {
		return "", errLocalPart
	}
	if isDotString(local) {
		return local + "@" + domain, nil
	}
	for _, r := range local {
		if r < 0x20 || r == 0x7f {
			return "", errLocalPart
		}
	}
	return quoteLocal(local) + "@" + domain, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isDotString reports RFC 5321 Dot-string: atoms of atext separated by single dots (non-ASCII allowed, RFC 6531).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r >= 0x80 {
			continue
		}
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r) {
			return false
		}
	}
	return true
}

func quoteLocal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// checkDomain accepts a host name (letters, digits, hyphens, and underscores found on internal hosts; any
// non-ASCII label under SMTPUTF8) or an address literal [192.0.2.1] / [IPv6:2001:db8::1].
func checkDomain(d string) error {
	if d == "" || len(d) > 253 {
		return errDomain
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' {
			return errDomain
		}
		lit := d[1 : len(d)-1]
		if v6, ok := cutPrefixFold(lit, "IPv6:"); ok {
			if a, err := netip.ParseAddr(v6); err == nil && a.Is6() && !a.Is4In6() {
				return nil
			}
			return errDomain
		}
		if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
			return nil
		}
		return errDomain
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errDomain
		}
		for _, r := range label {
			if r >= 0x80 || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' {
				continue
			}
			return errDomain
		}
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
