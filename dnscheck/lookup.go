package dnscheck

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// LookupAddrs returns the IPv4 and IPv6 addresses of host, IPv4 first. Both families are queried in parallel.
//
// Addresses found in one family are returned even when the other failed. With none found: ErrTemporary when
// either query failed temporarily, ErrNXDomain when the name does not exist, ErrNoAddress when it exists
// without A or AAAA records.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var (
		wg         sync.WaitGroup
		v4, v6     []netip.Addr
		err4, err6 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); v4, err4 = r.LookupA(ctx, host) }()
	go func() { defer wg.Done(); v6, err6 = r.LookupAAAA(ctx, host) }()
	wg.Wait()
	if addrs := append(v4, v6...); len(addrs) > 0 {
		return addrs, nil
	}
	for _, kind := range []error{ErrTemporary, ErrNXDomain} {
		for _, err := range []error{err4, err6} {
			if errors.Is(err, kind) {
				return nil, err
			}
		}
	}
	return nil, &Error{Name: host, Type: "A/AAAA", Kind: ErrNoAddress}
}

// LookupA returns the IPv4 addresses of host: ErrNoAddress when the name exists without A records,
// ErrNXDomain, or ErrTemporary.
func (r *Resolver) LookupA(ctx context.Context, host string) ([]netip.Addr, error) {
	return r.lookupIP(ctx, host, dns.TypeA)
}

// LookupAAAA returns the IPv6 addresses of host, with the errors of LookupA.
func (r *Resolver) LookupAAAA(ctx context.Context, host string) ([]netip.Addr, error) {
	return r.lookupIP(ctx, host, dns.TypeAAAA)
}

func (r *Resolver) lookupIP(ctx context.Context, host string, qtype uint16) ([]netip.Addr, error) {
	rrs, err := r.lookup(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	addrs := addrsOf(rrs)
	if len(addrs) == 0 {
		return nil, &Error{Name: host, Type: dns.TypeToString[qtype], Kind: ErrNoAddress}
	}
	return addrs, nil
}

// addrsOf returns the addresses of the A and AAAA records among rrs.
func addrsOf(rrs []dns.RR) []netip.Addr {
	var addrs []netip.Addr
	for _, rr := range rrs {
		var a netip.Addr
		var ok bool
		switch rr := rr.(type) {
		case *dns.A:
			a, ok = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			a, ok = netip.AddrFromSlice(rr.AAAA.To16())
		}
		if ok {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// LookupPTR returns the names (without the trailing dot) that addr's reverse entry points to. A reverse name
// that exists without PTR records gives an empty list and no error; a missing one ErrNXDomain.
func (r *Resolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return nil, &Error{Name: addr.String(), Type: "PTR", Kind: ErrNXDomain, Detail: err.Error()}
	}
	rrs, err := r.lookup(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, rr := range rrs {
		names = append(names, strings.TrimSuffix(rr.(*dns.PTR).Ptr, "."))
	}
	return names, nil
}

// LookupTXT returns the TXT records of name, the character-strings of each record joined (RFC 7208 3.3).
// A name without TXT records gives an empty list and no error; a missing one ErrNXDomain.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var txts []string
	for _, rr := range rrs {
		txts = append(txts, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return txts, nil
}

// ResolveHost returns the addresses to connect to for host, a name or an IP literal as written in a host:port
// setting. An IP literal is returned as it is, never looked up; "localhost" and names under it are the loopback
// addresses (RFC 6761 6.3: no query is sent for them); any other name is looked up with r, the configured
// resolver, as LookupAddrs does (IPv4 first). r may be nil when no resolver is configured: a name then fails
// as a temporary error.
func ResolveHost(ctx context.Context, r Lookuper, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if l := strings.ToLower(host); l == "localhost" || strings.HasSuffix(l, ".localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}, nil
	}
	if r == nil {
		return nil, &Error{Name: host, Type: "A/AAAA", Kind: ErrTemporary, Detail: "no DNS resolver configured"}
	}
	return r.LookupAddrs(ctx, host)
}
