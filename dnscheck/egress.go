package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Family is an IP address family; ptrelay judges its IPv4 and IPv6 egress separately, because receivers do.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// MarshalText makes a Family "ipv4" or "ipv6" in JSON.
func (f Family) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads "ipv4" or "ipv6" back, so `ptrelay check -json` round-trips.
func (f *Family) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ipv4":
		*f = IPv4
	case "ipv6":
		*f = IPv6
	default:
		return fmt.Errorf("unknown address family %q (want ipv4 or ipv6)", b)
	}
	return nil
}

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Egress is the public address mail leaves from, and how it was found.
type Egress struct {
	IP     netip.Addr `json:"ip"`
	Method string     `json:"method"`           // "static", "dns", "local"
	Source string     `json:"source,omitempty"` // the whoami server that answered, or the target for "local"
	// Private: the kernel picked a private, shared or loopback address ("local" discovery behind NAT): it is not
	// what receivers see, so nothing can be judged from it.
	Private bool `json:"private,omitempty"`
}

// EgressOptions says how to find the egress IP.
type EgressOptions struct {
	// Static is egress.ip: one address, or an IPv4 and an IPv6 address separated by a comma or space. When set,
	// nothing is discovered.
	Static string
	// Discovery methods in order: "dns" (a whoami query to Whoami) and "local" (the kernel's source address).
	Discovery []string
	// Whoami servers as host:port. Each is asked A/AAAA myip.opendns.com (OpenDNS style), then
	// TXT o-o.myaddr.l.google.com (Google style); the first address of the wanted family wins.
	Whoami []string
	// Resolver looks up the whoami servers' names (dns.resolvers, never the system's resolver); an IP address
	// is used as it is. SelfCheck fills it from its own Resolver when nil.
	Resolver Lookuper
	// LocalTargets are the public addresses (host:port) the "local" method routes toward, per family;
	// no packet is sent. Empty: Google's public resolvers.
	LocalTargets map[Family]string
	Timeout      time.Duration // per query; zero: 5s
}

// Names asked by the whoami method.
const (
	WhoamiOpenDNS = "myip.opendns.com."
	WhoamiGoogle  = "o-o.myaddr.l.google.com."
)

var defaultLocalTargets = map[Family]string{IPv4: "8.8.8.8:53", IPv6: "[2001:4860:4860::8888]:53"}

// ErrNoEgress means no method found an address of the family (no IPv6 connectivity, for instance).
var ErrNoEgress = errors.New("no egress address found")

// ErrNoRoute means the kernel has no route for the family at all (an IPv4-only network has no IPv6 route): not a
// failure to retry, and harmless, since mail leaves over the other family.
var ErrNoRoute = errors.New("this machine has no route for the address family")

// wrapped keeps err's chain (errors.Is sees the errno or the sentinels) under a message of our own words.
type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// noRoute reports a socket error that says the family is not routed here at all.
func noRoute(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EADDRNOTAVAIL) ||
		errors.Is(err, syscall.EAFNOSUPPORT)
}

// DiscoverEgress finds the egress address of family f: the static one when configured, else each discovery
// method in order. The error lists why each method failed; it wraps ErrNoEgress.
func DiscoverEgress(ctx context.Context, o EgressOptions, f Family) (Egress, error) {
	if strings.TrimSpace(o.Static) != "" {
		addrs, err := ParseStaticEgress(o.Static)
		if err != nil {
			return Egress{}, err
		}
		for _, a := range addrs {
			if FamilyOf(a) == f {
				return Egress{IP: a, Method: "static"}, nil
			}
		}
		return Egress{}, fmt.Errorf("%w: egress.ip has no %s address", ErrNoEgress, f)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	var why []string
	unrouted := false
	for _, m := range o.Discovery {
		var e Egress
		var err error
		switch m {
		case "dns":
			e, err = whoamiAny(ctx, o.Resolver, o.Whoami, f, timeout)
		case "local":
			target := o.LocalTargets[f]
			if target == "" {
				target = defaultLocalTargets[f]
			}
			e, err = localEgress(ctx, target, f)
		default:
			err = fmt.Errorf("unknown discovery method %q (want dns or local)", m)
		}
		if err == nil {
			return e, nil
		}
		unrouted = unrouted || noRoute(err)
		why = append(why, m+": "+err.Error())
	}
	if len(why) == 0 {
		why = append(why, "no discovery method configured")
	}
	if unrouted {
		return Egress{}, wrapped{fmt.Sprintf("%v (%s): %s", ErrNoEgress, f, strings.Join(why, "; ")),
			errors.Join(ErrNoEgress, ErrNoRoute)}
	}
	return Egress{}, fmt.Errorf("%w (%s): %s", ErrNoEgress, f, strings.Join(why, "; "))
}

// ParseStaticEgress parses egress.ip: up to one address per family.
func ParseStaticEgress(s string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	seen := map[Family]bool{}
	for _, field := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := netip.ParseAddr(field)
		if err != nil {
			return nil, fmt.Errorf("egress.ip %q: %w", field, err)
		}
		a = a.Unmap()
		if seen[FamilyOf(a)] {
			return nil, fmt.Errorf("egress.ip %q: two %s addresses", s, FamilyOf(a))
		}
		seen[FamilyOf(a)] = true
		addrs = append(addrs, a)
	}
	return addrs, nil
}

func whoamiAny(ctx context.Context, r Lookuper, servers []string, f Family, timeout time.Duration) (Egress, error) {
	if len(servers) == 0 {
		return Egress{}, errors.New("no whoami servers configured")
	}
	var why []string
	for _, s := range servers {
		addr, err := whoamiAddr(ctx, r, s, f)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		ip, err := Whoami(ctx, addr, f, timeout)
		if err == nil {
			return Egress{IP: ip, Method: "dns", Source: s}, nil
		}
		why = append(why, err.Error())
	}
	return Egress{}, errors.New(strings.Join(why, "; "))
}

// whoamiAddr is where to send the whoami query for server (host:port) over family f: an IP address as it is,
// a name's first address of family f through r.
func whoamiAddr(ctx context.Context, r Lookuper, server string, f Family) (string, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return "", fmt.Errorf("whoami %s: %w", server, err)
	}
	addrs, err := ResolveHost(ctx, r, host)
	if err != nil {
		return "", fmt.Errorf("whoami %s: %w", server, err)
	}
	for _, a := range addrs {
		if FamilyOf(a) == f {
			return net.JoinHostPort(a.String(), port), nil
		}
	}
	return "", fmt.Errorf("whoami %s: no %s address", server, f)
}

// Whoami asks server (ip:port) which address our query came from, over family f: first
// A/AAAA myip.opendns.com, then TXT o-o.myaddr.l.google.com.
func Whoami(ctx context.Context, server string, f Family, timeout time.Duration) (netip.Addr, error) {
	network, qtype := "udp4", dns.TypeA
	if f == IPv6 {
		network, qtype = "udp6", dns.TypeAAAA
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	var why []string
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{WhoamiOpenDNS, qtype}, {WhoamiGoogle, dns.TypeTXT}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.RecursionDesired = true
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err != nil {
			why = append(why, fmt.Sprintf("%s %s: %s", dns.TypeToString[q.qtype], q.name, cleanNetErr(err)))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if ip, ok := whoamiAnswer(r, f); ok {
			return ip, nil
		}
		why = append(why, fmt.Sprintf("%s %s: %s, no %s address in the answer",
			dns.TypeToString[q.qtype], q.name, dns.RcodeToString[r.Rcode], f))
	}
	return netip.Addr{}, fmt.Errorf("whoami %s: %s", server, strings.Join(why, "; "))
}

// whoamiAnswer takes the first address of family f from A/AAAA records or from TXT strings.
func whoamiAnswer(r *dns.Msg, f Family) (netip.Addr, bool) {
	if r.Rcode != dns.RcodeSuccess {
		return netip.Addr{}, false
	}
	for _, rr := range r.Answer {
		var cands []string
		switch rr := rr.(type) {
		case *dns.A:
			cands = []string{rr.A.String()}
		case *dns.AAAA:
			cands = []string{rr.AAAA.String()}
		case *dns.TXT:
			cands = rr.Txt
		}
		for _, c := range cands {
			if a, err := netip.ParseAddr(strings.TrimSpace(c)); err == nil && FamilyOf(a) == f {
				return a.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// localEgress asks the kernel which source address it would use toward target: connecting a UDP socket picks
// the route and source address without sending anything.
func localEgress(ctx context.Context, target string, f Family) (Egress, error) {
	network := "udp4"
	if f == IPv6 {
		network = "udp6"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, target)
	if err != nil {
		return Egress{}, wrapped{fmt.Sprintf("no route toward %s: %s", target, cleanNetErr(err)), err}
	}
	defer conn.Close()
	ap, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return Egress{}, err
	}
	ip := ap.Addr().Unmap()
	return Egress{IP: ip, Method: "local", Source: target, Private: !isPublic(ip)}, nil
}

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598 carrier-grade NAT

func isPublic(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !sharedSpace.Contains(ip)
}
