package dnscheck

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host     string // without the trailing dot
	Pref     uint16
	Implicit bool // no MX records: the domain itself is the exchanger (RFC 5321 5.1)
}

// LookupMX returns the mail exchangers of domain, lowest preference first and in random order among equal
// preferences (RFC 5321 5.1), so that equal MX hosts share the load.
//
// Outcomes: no MX records (NODATA) gives the implicit MX [{Host: domain, Implicit: true}]; a null MX (RFC 7505,
// a single MX "." ) gives ErrNullMX; a missing domain ErrNXDomain; SERVFAIL, timeouts and network errors
// ErrTemporary. Every error is an *Error.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	rrs, err := r.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []MX
	null := false
	for _, rr := range rrs {
		m := rr.(*dns.MX)
		if m.Mx == "." {
			null = true
			continue
		}
		mxs = append(mxs, MX{Host: strings.TrimSuffix(m.Mx, "."), Pref: m.Preference})
	}
	if len(mxs) == 0 {
		if null {
			return nil, &Error{Name: domain, Type: "MX", Kind: ErrNullMX}
		}
		return []MX{{Host: strings.TrimSuffix(domain, "."), Implicit: true}}, nil
	}
	// A "." next to real exchangers is a misconfiguration (RFC 7505 3 forbids it); the real ones still work.
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	return mxs, nil
}
