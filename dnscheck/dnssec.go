package dnscheck

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// DNSSEC as a validating resolver reports it: ptrelay does not validate signatures itself. A validating
// resolver sets the AD ("authentic data") bit on answers it proved with DNSSEC; ptrelay believes the bit only
// from a resolver it trusts (dns.trust_ad), since anyone on the path between an untrusted resolver and us can
// set it (RFC 6698 A.3.2; glibc's "trust-ad" option and Postfix's TLS_README say the same: run the validating
// resolver on the loopback interface). DANE (RFC 7672) uses nothing else.

// TrustAD is dns.trust_ad: whose AD bit counts.
type TrustAD string

const (
	TrustLoopback TrustAD = "loopback" // only resolvers on 127.0.0.0/8 or ::1 (the default; "" means this)
	TrustAlways   TrustAD = "always"   // every configured resolver (a validating resolver on a LAN you trust)
	TrustNever    TrustAD = "never"    // no answer is authentic: DANE stays off
)

// Valid reports one of the words, or "" (loopback).
func (t TrustAD) Valid() bool {
	return t == "" || t == TrustLoopback || t == TrustAlways || t == TrustNever
}

// trusted reports whether the AD bit of an answer from server ("ip:port") counts.
func (r *Resolver) trusted(server string) bool {
	switch r.trust {
	case TrustAlways:
		return true
	case TrustNever:
		return false
	}
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// edeText renders a response's Extended DNS Errors (RFC 8914), e.g. " (EDE 6: DNSSEC Bogus)": unbound says
// there why it answered SERVFAIL, which is what an admin needs to tell a bogus zone from a dead server.
func edeText(msg *dns.Msg) string {
	opt := msg.IsEdns0()
	if opt == nil {
		return ""
	}
	var parts []string
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			s := "EDE " + strconv.Itoa(int(e.InfoCode))
			if name := dns.ExtendedErrorCodeToString[e.InfoCode]; name != "" {
				s += ": " + name
			}
			if e.ExtraText != "" {
				s += ", " + e.ExtraText
			}
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// MXAnswer is LookupMX's result with its authenticity.
type MXAnswer struct {
	MX []MX
	// Authentic: the MX RRset (or, for an implicit MX, the proof that there is none) was validated by a
	// trusted resolver.
	Authentic bool
}

// LookupMXDNSSEC is LookupMX that also says whether the answer was DNSSEC-validated (RFC 7672 2.2.1: DANE
// needs a secure MX RRset; with an insecure one only the domain's own name could be trusted).
func (r *Resolver) LookupMXDNSSEC(ctx context.Context, domain string) (MXAnswer, error) {
	a, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return MXAnswer{}, err
	}
	mxs, err := mxFrom(domain, a.rrs)
	return MXAnswer{MX: mxs, Authentic: a.authentic}, err
}

// AddrAnswer is LookupAddrs's result with its authenticity.
type AddrAnswer struct {
	Addrs []netip.Addr
	// Authentic: every A and AAAA answer (the addresses, and the proof that a family has none) was validated.
	Authentic bool
	// Canonical is the name the addresses belong to when host is a CNAME (without the trailing dot), else "".
	Canonical string
}

// LookupAddrsDNSSEC is LookupAddrs that also says whether the answers were DNSSEC-validated (RFC 7672 2.2.2:
// TLSA records are looked up only for an MX host whose addresses are secure). Canonical is the CNAME-expanded
// host name, without the trailing dot, when it differs from host.
func (r *Resolver) LookupAddrsDNSSEC(ctx context.Context, host string) (AddrAnswer, error) {
	var (
		wg     sync.WaitGroup
		v4, v6 answer
		e4, e6 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); v4, e4 = r.query(ctx, host, dns.TypeA) }()
	go func() { defer wg.Done(); v6, e6 = r.query(ctx, host, dns.TypeAAAA) }()
	wg.Wait()
	out := AddrAnswer{Authentic: true}
	for _, x := range []struct {
		a   answer
		err error
	}{{v4, e4}, {v6, e6}} {
		if x.err != nil && !errors.Is(x.err, ErrNXDomain) {
			continue // a failed family adds nothing; its error matters only when no address is found
		}
		out.Authentic = out.Authentic && x.a.authentic
		out.Addrs = append(out.Addrs, addrsOf(x.a.rrs)...)
		if c := strings.TrimSuffix(x.a.name, "."); c != "" && !strings.EqualFold(c, strings.TrimSuffix(host, ".")) {
			out.Canonical = c
		}
	}
	if len(out.Addrs) > 0 {
		return out, nil
	}
	for _, kind := range []error{ErrTemporary, ErrNXDomain} {
		for _, err := range []error{e4, e6} {
			if errors.Is(err, kind) {
				return AddrAnswer{}, err
			}
		}
	}
	return AddrAnswer{}, &Error{Name: host, Type: "A/AAAA", Kind: ErrNoAddress}
}

// TLSA is one TLSA record (RFC 6698 2.1), its association data decoded from the zone's hex.
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // nil when the record's hex did not decode
}

func (t TLSA) String() string {
	return fmt.Sprintf("%d %d %d %X", t.Usage, t.Selector, t.MatchingType, t.Data)
}

// TLSAAnswer is the TLSA RRset of one service.
type TLSAAnswer struct {
	Name    string // the name asked, "_25._tcp.mx.example.com"
	Records []TLSA // empty: no TLSA records (NXDOMAIN or NODATA)
	// Authentic: the records, or their absence, were validated by a trusted resolver. Records that are not
	// authentic must be ignored (RFC 7672 2.2).
	Authentic bool
}

// LookupTLSA returns the TLSA records of _port._tcp.host. No records is not an error; a SERVFAIL (which a
// validating resolver answers for bogus records, RFC 4035 5.5), a timeout or a network error is ErrTemporary:
// for DANE that host then cannot be used (RFC 7672 2.2.1), never a reason to go on without DANE.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) (TLSAAnswer, error) {
	name := "_" + strconv.Itoa(port) + "._tcp." + strings.TrimSuffix(host, ".")
	a, err := r.query(ctx, name, dns.TypeTLSA)
	out := TLSAAnswer{Name: name, Authentic: a.authentic}
	if errors.Is(err, ErrNXDomain) {
		return out, nil
	}
	if err != nil {
		return TLSAAnswer{Name: name}, err
	}
	for _, rr := range a.rrs {
		t := rr.(*dns.TLSA)
		rec := TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType}
		// Decoded bytes, compared as bytes: miekg/dns's TLSA.Verify compares hex strings, and zone text keeps
		// its case, so an upper-case record would never match there.
		if data, err := hex.DecodeString(t.Certificate); err == nil {
			rec.Data = data
		}
		out.Records = append(out.Records, rec)
	}
	return out, nil
}

// DNSSECStatus says whether answers from this resolver can be DNSSEC-authentic, the condition of DANE.
type DNSSECStatus struct {
	Validating bool   `json:"validating"`
	Temporary  bool   `json:"temporary,omitempty"` // the probe itself failed (DNS down): try again later
	Detail     string `json:"detail"`              // what was found
	Fix        string `json:"fix,omitempty"`       // how to get DANE: lines of configuration, when not validating
}

// DNSSECFix is how an admin gets DANE: a validating resolver beside ptrelay. Debian's unbound package
// validates with the root trust anchor out of the box (its root-auto-trust-anchor-file.conf).
const DNSSECFix = `run a validating resolver on this machine and point ptrelay at it:
  apt-get install unbound            # Debian's unbound validates DNSSEC out of the box
  # elsewhere, in unbound.conf:  server:  auto-trust-anchor-file: "/var/lib/unbound/root.key"
  # ptrelay.toml:
  [dns]
  resolvers = ["127.0.0.1:53"]
(a validating resolver on a network you trust instead: [dns] trust_ad = "always")`

// ProbeDNSSEC asks for name's NS records (a signed name: "." by default) and reports whether the answer came
// back authentic from a trusted resolver. It is what dane = "auto" is decided by.
func (r *Resolver) ProbeDNSSEC(ctx context.Context, name string) DNSSECStatus {
	if name == "" {
		name = "."
	}
	if r.trust == TrustNever {
		return DNSSECStatus{Detail: `dns.trust_ad is "never": no answer counts as DNSSEC-validated`,
			Fix: `set dns.trust_ad = "loopback" (the default) and ` + DNSSECFix}
	}
	trusted := false
	for _, s := range r.servers {
		trusted = trusted || r.trusted(s)
	}
	if !trusted {
		return DNSSECStatus{Detail: fmt.Sprintf("no resolver in use (%s) is on this machine, and with dns.trust_ad = "+
			"\"loopback\" the AD bit of a resolver elsewhere could be forged on the way", strings.Join(r.servers, ", ")),
			Fix: DNSSECFix}
	}
	msg, server, err := r.exchange(ctx, dns.Fqdn(name), dns.TypeNS)
	switch {
	case err != nil:
		return DNSSECStatus{Temporary: true, Detail: fmt.Sprintf("the DNSSEC probe (NS %s) failed: %v", name, err),
			Fix: "check that the resolvers in dns.resolvers (or /etc/resolv.conf) answer"}
	case !r.trusted(server):
		return DNSSECStatus{Detail: fmt.Sprintf("%s answered the probe (NS %s) but is not on this machine (dns.trust_ad = \"loopback\")",
			server, name), Fix: DNSSECFix}
	case !msg.AuthenticatedData:
		return DNSSECStatus{Detail: fmt.Sprintf("%s answered the probe (NS %s), a signed name, without the AD bit: it "+
			"does not validate DNSSEC", server, name), Fix: DNSSECFix}
	}
	return DNSSECStatus{Validating: true, Detail: fmt.Sprintf("%s validates DNSSEC (NS %s came back authentic)", server, name)}
}
