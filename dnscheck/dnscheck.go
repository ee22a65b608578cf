// Package dnscheck owns ptrelay's DNS: a miekg/dns resolver for MX, A/AAAA, PTR and TXT lookups with the
// outcomes delivery needs told apart (NXDOMAIN, NODATA, null MX, temporary failure), and the egress self-check
// (egress IP discovery, PTR / FCrDNS, generic names, DNSBL, port 25, SPF) that yields the routing verdict.
//
// It knows nothing of the queue, SMTP sessions or the configuration file: callers pass plain Options.
package dnscheck

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Lookups return an *Error that wraps exactly one of them; test with errors.Is.
var (
	// ErrTemporary: SERVFAIL, REFUSED, timeout or a network error from every server tried. Retry later
	// (delivery defers with 4.4.3); never treat it as "does not exist".
	ErrTemporary = errors.New("temporary DNS failure")
	// ErrNXDomain: the name does not exist (RCODE 3).
	ErrNXDomain = errors.New("domain name does not exist (NXDOMAIN)")
	// ErrNullMX: the domain publishes a null MX (RFC 7505): it accepts no mail.
	ErrNullMX = errors.New("domain accepts no mail (null MX, RFC 7505)")
	// ErrNoAddress: the name exists but has neither A nor AAAA records.
	ErrNoAddress = errors.New("host has no A or AAAA record")
)

// Error is a failed lookup: what was asked, which sentinel applies, and why (for the log).
type Error struct {
	Name   string // the name queried, as given
	Type   string // "MX", "A", "AAAA", "PTR", "TXT"
	Kind   error  // one of the sentinel errors
	Detail string // e.g. "SERVFAIL from 127.0.0.1:53; i/o timeout from 10.0.0.1:53"
}

func (e *Error) Error() string {
	s := fmt.Sprintf("dns %s %s: %v", e.Type, strings.TrimSuffix(e.Name, "."), e.Kind)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap lets errors.Is(err, ErrTemporary) and friends work.
func (e *Error) Unwrap() error { return e.Kind }
