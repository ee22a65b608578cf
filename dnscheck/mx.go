package dnscheck

import (
	"context"
	"errors"
	"fmt"
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
	return mxFrom(domain, rrs)
}

// mxFrom turns domain's MX records into exchangers, as LookupMX describes.
func mxFrom(domain string, rrs []dns.RR) ([]MX, error) {
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

// CheckMX walks the MX records of d to their hosts and addresses, the first line of the checklist: whether mail
// for the sending domain (bounces, replies) can reach it.
func CheckMX(ctx context.Context, r Lookuper, d string) Check {
	c := Check{ID: "mx:" + d, Title: "MX of " + d}
	mxs, err := r.LookupMX(ctx, d)
	if err != nil {
		c.Status, c.Detail = StatusPermError, err.Error()
		c.Fix = "Publish an MX record for " + d + " that points to a host name with an A record."
		if errors.Is(err, ErrTemporary) {
			c.Status, c.Fix = StatusTempError, "Check that the resolvers in dns.resolvers (or /etc/resolv.conf) answer."
		}
		return c
	}
	var parts []string
	ok := true
	for _, mx := range mxs {
		addrs, err := r.LookupAddrs(ctx, mx.Host)
		switch {
		case err != nil:
			ok = false
			parts = append(parts, fmt.Sprintf("%s (%d) -> %v", mx.Host, mx.Pref, err))
		default:
			as := make([]string, len(addrs))
			for i, a := range addrs {
				as[i] = a.String()
			}
			label := fmt.Sprintf("%s (%d)", mx.Host, mx.Pref)
			if mx.Implicit {
				label = mx.Host + " (no MX: the domain's own address)"
			}
			parts = append(parts, label+" -> "+strings.Join(as, ", "))
		}
	}
	c.Detail = strings.Join(parts, "; ")
	c.Status = StatusPass
	if !ok {
		c.Status = StatusFail
		c.Fix = "Give every MX host of " + d + " an A (or AAAA) record."
	}
	return c
}
