// Package mtasts implements the sending side of MTA-STS (RFC 8461): the "_mta-sts" TXT record and the policy
// file's syntax (policy.go), fetching the policy over HTTPS (fetch.go), and the cache that keeps policies in
// the queue database and decides when to look again (cache.go, store.go).
//
// What a policy means for one delivery (which MX hosts, which TLS) is decided by relay/tlspolicy; this
// package only finds policies and keeps them. It knows nothing of SMTP sessions.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 5).
type Mode string

const (
	ModeEnforce Mode = "enforce" // deliver only to listed MX hosts, over verified TLS
	ModeTesting Mode = "testing" // deliver as without a policy; report what would have failed
	ModeNone    Mode = "none"    // the domain withdrew its policy
)

// MaxMaxAge is the largest max_age a policy may ask for (RFC 8461 3.2: 31557600 seconds, about a year); a
// larger one is capped, so a typo cannot pin a policy for decades.
const MaxMaxAge = 31557600 * time.Second

// Policy is a parsed MTA-STS policy.
type Policy struct {
	Mode Mode `json:"mode"`
	// MX are the patterns of the allowed MX hosts, lower case, without trailing dot: "mx.example.com", or
	// "*.example.com" for any host exactly one label below example.com.
	MX     []string      `json:"mx,omitempty"`
	MaxAge time.Duration `json:"max_age"`
}

// ErrPolicySyntax: the policy file is not a valid MTA-STS policy. The sender then acts as if the domain had no
// policy (RFC 8461 3.2); the TLS-RPT result is "sts-policy-invalid".
var ErrPolicySyntax = errors.New("invalid MTA-STS policy")

// ParsePolicy parses a policy file (RFC 8461 3.2): "key: value" lines ended by LF or CRLF. Unknown keys are
// ignored; of a repeated key other than mx the first counts; version, mode and max_age are required, and at
// least one mx unless the mode is none. Blank lines and spaces around values are tolerated (servers add them).
// Errors wrap ErrPolicySyntax.
func ParsePolicy(text string) (*Policy, error) {
	p := &Policy{}
	seen := map[string]bool{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d has no ':'", ErrPolicySyntax, n+1)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("%w: line %d: bad field name %q", ErrPolicySyntax, n+1, clip(key))
		}
		value = strings.Trim(value, " \t")
		first := !seen[key]
		seen[key] = true
		switch key {
		case "version":
			if first && value != "STSv1" {
				return nil, fmt.Errorf("%w: version %q, want STSv1", ErrPolicySyntax, clip(value))
			}
		case "mode":
			m := Mode(value)
			if m != ModeEnforce && m != ModeTesting && m != ModeNone {
				return nil, fmt.Errorf("%w: mode %q, want enforce, testing or none", ErrPolicySyntax, clip(value))
			}
			if first {
				p.Mode = m
			}
		case "max_age":
			secs, err := parseMaxAge(value)
			if err != nil {
				return nil, fmt.Errorf("%w: max_age %q: %v", ErrPolicySyntax, clip(value), err)
			}
			if first {
				p.MaxAge = secs
			}
		case "mx":
			pat, err := parseMXPattern(value)
			if err != nil {
				return nil, fmt.Errorf("%w: mx %q: %v", ErrPolicySyntax, clip(value), err)
			}
			p.MX = append(p.MX, pat)
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: no %s field", ErrPolicySyntax, k)
		}
	}
	if p.Mode != ModeNone && len(p.MX) == 0 {
		return nil, fmt.Errorf("%w: mode %s without any mx field", ErrPolicySyntax, p.Mode)
	}
	return p, nil
}

// validKey: 1*32(ALPHA / DIGIT / "_" / "-" / ".") (RFC 8461 3.2, sts-policy-field-name).
func validKey(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// parseMaxAge reads 1*10DIGIT seconds, capped at MaxMaxAge.
func parseMaxAge(v string) (time.Duration, error) {
	if v == "" || len(v) > 10 {
		return 0, errors.New("want 1 to 10 digits")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errors.New("want 1 to 10 digits")
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > uint64(MaxMaxAge/time.Second) {
		return MaxMaxAge, nil
	}
	return time.Duration(n) * time.Second, nil
}

// parseMXPattern checks "host.example" or "*.example" (RFC 8461 3.2, sts-policy-mx-value: A-labels only) and
// returns it in lower case without a trailing dot.
func parseMXPattern(v string) (string, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	name, wild := strings.CutPrefix(v, "*.")
	if !validDomain(name) {
		return "", errors.New("not a host name (A-labels only)")
	}
	if wild && !strings.Contains(name, ".") {
		return "", errors.New("a wildcard needs a domain of at least two labels")
	}
	return v, nil
}

// validDomain: labels of letters, digits and hyphens (not at the ends), 1 to 63 characters, 253 in all.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Matches reports whether host (an MX host name) is one the policy allows: equal to a pattern, or, for
// "*.example.com", exactly one label below example.com; "*.example.com" does not match example.com itself or
// a.b.example.com (RFC 8461 4.1).
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if base, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == base {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// String is the policy in its own syntax, as `ptrelay mtasts show` prints it.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\nmode: %s\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\n", int64(p.MaxAge/time.Second))
	return b.String()
}

// ErrNoRecord: the domain publishes no usable "_mta-sts" TXT record, so it does not implement MTA-STS.
var ErrNoRecord = errors.New("no MTA-STS record")

// FindRecord picks the MTA-STS record among the TXT records of "_mta-sts.<domain>" and returns its id
// (RFC 8461 3.1): records that do not start with "v=STSv1;" are discarded; unless exactly one is left, and it
// parses, the domain has no MTA-STS (an error wrapping ErrNoRecord says why).
func FindRecord(txts []string) (id string, err error) {
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") || t == "v=STSv1" {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", ErrNoRecord
	case 1:
	default:
		return "", fmt.Errorf("%w: %d records start with v=STSv1 (RFC 8461 3.1 wants exactly one)", ErrNoRecord, len(recs))
	}
	return parseRecord(recs[0])
}

// parseRecord reads "v=STSv1; id=...;" with optional extensions: fields separated by ";" and optional spaces
// (RFC 8461 3.1). id is 1 to 32 letters and digits.
func parseRecord(rec string) (string, error) {
	id := ""
	for i, field := range strings.Split(rec, ";") {
		field = strings.Trim(field, " \t")
		if i == 0 {
			continue // "v=STSv1", checked by the caller
		}
		if field == "" {
			continue // the trailing ";" and doubled separators
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("%w: field %q is not key=value", ErrNoRecord, clip(field))
		}
		if k == "id" && id == "" {
			if !validID(v) {
				return "", fmt.Errorf("%w: id %q is not 1 to 32 letters and digits", ErrNoRecord, clip(v))
			}
			id = v
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: the record has no id", ErrNoRecord)
	}
	return id, nil
}

func validID(v string) bool {
	if v == "" || len(v) > 32 {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// clip keeps text from a remote server short in messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
