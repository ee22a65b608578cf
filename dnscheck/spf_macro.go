package dnscheck

import (
	"fmt"
	"strconv"
	"strings"
)

// expand applies RFC 7208 7 macros to a domain-spec ("%{i}._spf.%{d}"). domain is the current domain.
func (e *spfEval) expand(spec, domain string) (string, error) {
	if !strings.Contains(spec, "%") {
		return strings.TrimSuffix(spec, "."), nil
	}
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		if spec[i] != '%' {
			b.WriteByte(spec[i])
			continue
		}
		if i+1 >= len(spec) {
			return "", fmt.Errorf("macro %q: lone %%", spec)
		}
		i++
		switch spec[i] {
		case '%':
			b.WriteByte('%')
		case '_':
			b.WriteByte(' ')
		case '-':
			b.WriteString("%20")
		case '{':
			end := strings.IndexByte(spec[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("macro %q: missing }", spec)
			}
			v, err := e.macro(spec[i+1:i+end], domain)
			if err != nil {
				return "", fmt.Errorf("macro %q: %v", spec, err)
			}
			b.WriteString(v)
			i += end
		default:
			return "", fmt.Errorf("macro %q: bad %%%c", spec, spec[i])
		}
	}
	return strings.TrimSuffix(b.String(), "."), nil
}

// macro expands the inside of one %{...}: a letter, optional digits, optional "r", optional delimiters.
func (e *spfEval) macro(m, domain string) (string, error) {
	if m == "" {
		return "", fmt.Errorf("empty %%{}")
	}
	local, senderDomain, _ := strings.Cut(e.sender, "@")
	var v string
	switch m[0] | 0x20 { // upper-case letters mean URL-escaping, which domain names never need here
	case 's':
		v = e.sender
	case 'l':
		v = local
	case 'o':
		v = senderDomain
	case 'd':
		v = domain
	case 'i':
		if e.ip.Is4() {
			v = e.ip.String()
		} else {
			h := fmt.Sprintf("%x", e.ip.As16())
			v = strings.Join(strings.Split(h, ""), ".")
		}
	case 'p':
		v = "unknown"
	case 'v':
		v = "in-addr"
		if !e.ip.Is4() {
			v = "ip6"
		}
	case 'h':
		v = e.helo
	default:
		return "", fmt.Errorf("unknown macro letter %q", m[0])
	}
	rest := m[1:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	keep := 0
	if j > 0 {
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n == 0 {
			return "", fmt.Errorf("bad digits %q", rest[:j])
		}
		keep = n
	}
	rest = rest[j:]
	reverse := false
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		reverse, rest = true, rest[1:]
	}
	delims := "."
	if rest != "" {
		if strings.Trim(rest, ".-+,/_=") != "" {
			return "", fmt.Errorf("bad delimiters %q", rest)
		}
		delims = rest
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if reverse {
		for a, b := 0, len(parts)-1; a < b; a, b = a+1, b-1 {
			parts[a], parts[b] = parts[b], parts[a]
		}
	}
	if keep > 0 && keep < len(parts) {
		parts = parts[len(parts)-keep:]
	}
	return strings.Join(parts, "."), nil
}
