package dnscheck

import (
	"context"
	"net/netip"
)

// Status is the outcome of one check, in RFC 8601 words (as mox's iprev uses them).
type Status string

const (
	StatusPass      Status = "pass"
	StatusFail      Status = "fail"      // checked, and the answer is bad
	StatusTempError Status = "temperror" // DNS or network trouble: try again later, judge nothing from it
	StatusPermError Status = "permerror" // cannot be evaluated as things are (no PTR, refused DNSBL query, bad SPF)
	StatusNone      Status = "none"      // nothing to check (no IPv6 on this network): neither good nor bad
)

// Check is one line of the egress checklist.
type Check struct {
	// ID is stable, for programs: "egress", "ptr", "fcrdns", "hostname", "ptr-domain", "generic",
	// "dnsbl:<zone>", "port25", "spf:<domain>".
	ID     string `json:"id"`
	Title  string `json:"title"` // what was checked, for people
	Status Status `json:"status"`
	// Blocking: a fail or permerror here means receivers will refuse direct mail, so the verdict is smarthost
	// (and a temperror means the verdict is unknown). A non-blocking check that does not pass is a warning.
	Blocking bool   `json:"blocking"`
	Detail   string `json:"detail"`        // what we found
	Fix      string `json:"fix,omitempty"` // one sentence for the admin; empty on pass
	// Codes are a blocklist's return codes that list the address ("dnsbl:<zone>" checks that fail); DecodeDNSBL
	// says what each means.
	Codes []netip.Addr `json:"codes,omitempty"`
}

// Level is how `ptrelay check` shows the check: "ok", "warn", "fail", "unknown" or "none" (nothing to check).
func (c Check) Level() string {
	switch {
	case c.Status == StatusPass:
		return "ok"
	case c.Status == StatusNone:
		return "none"
	case c.Status == StatusTempError:
		return "unknown"
	case c.Blocking:
		return "fail"
	default:
		return "warn"
	}
}

// Lookuper is the DNS the checks need; *Resolver implements it, tests may fake it.
type Lookuper interface {
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
	LookupA(ctx context.Context, host string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, host string) ([]netip.Addr, error)
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

var _ Lookuper = (*Resolver)(nil)
