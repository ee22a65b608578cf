package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ResolverOptions configures a Resolver.
type ResolverOptions struct {
	// Servers are recursive resolvers as "host:port", tried in order. Empty: the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one exchange with one server (UDP, plus TCP when the answer was truncated).
	// Zero means 5s.
	Timeout time.Duration
	// TrustAD says whose "authentic data" bit counts (dns.trust_ad); "" is TrustLoopback.
	TrustAD TrustAD
}

// Resolver asks recursive DNS servers with miekg/dns. It is safe for concurrent use.
type Resolver struct {
	servers []string
	timeout time.Duration
	trust   TrustAD
}

const (
	defaultTimeout = 5 * time.Second
	// ednsSize is the DNS Flag Day 2020 buffer size: large enough for most answers, small enough not to fragment.
	ednsSize = 1232
	// maxCNAMEHops bounds CNAME chasing so a loop cannot keep us busy.
	maxCNAMEHops = 8
)

// NewResolver returns a resolver for o.Servers, or for the nameservers of /etc/resolv.conf when none are given.
func NewResolver(o ResolverOptions) (*Resolver, error) {
	r := &Resolver{timeout: o.Timeout, trust: o.TrustAD}
	if !r.trust.Valid() {
		return nil, fmt.Errorf("dns.trust_ad %q: want loopback, always or never", o.TrustAD)
	}
	if r.timeout <= 0 {
		r.timeout = defaultTimeout
	}
	for _, s := range o.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("dns server %q: want host:port: %w", s, err)
		}
		r.servers = append(r.servers, s)
	}
	if len(r.servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no DNS servers configured and /etc/resolv.conf unreadable: %w", err)
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
		if len(r.servers) == 0 {
			return nil, errors.New("no DNS servers configured and none in /etc/resolv.conf")
		}
	}
	return r, nil
}

// Servers returns the servers this resolver asks, in order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// answer is what a lookup found at the end of a CNAME chain.
type answer struct {
	rrs []dns.RR
	// authentic: every response of the chain came with the AD bit from a trusted server (RFC 4035 3.2.3,
	// RFC 6840 5.7): the validating resolver proved the data, or proved its absence, with DNSSEC.
	authentic bool
	name      string // the owner name the records belong to (the chain's last name), fully qualified
}

// lookup returns the records of qtype at the end of the CNAME chain starting at name. An empty result with a nil
// error is NODATA (the name exists). Errors are *Error wrapping ErrNXDomain or ErrTemporary.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	a, err := r.query(ctx, name, qtype)
	return a.rrs, err
}

// query is lookup with the answer's authenticity. For NXDOMAIN it returns the error and an answer whose
// authentic field says whether the denial was proven.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (answer, error) {
	cur := dns.Fqdn(name)
	authentic := true
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		msg, server, err := r.exchange(ctx, cur, qtype)
		if err != nil {
			return answer{}, r.fail(name, qtype, err)
		}
		authentic = authentic && msg.AuthenticatedData && r.trusted(server)
		if msg.Rcode == dns.RcodeNameError {
			// RFC 6604: with a CNAME chain the RCODE speaks of the last name, so the target is missing.
			return answer{authentic: authentic, name: cur},
				&Error{Name: name, Type: dns.TypeToString[qtype], Kind: ErrNXDomain, Detail: nxDetail(name, cur)}
		}
		target, rrs := followChain(msg.Answer, cur, qtype)
		if len(rrs) > 0 || target == cur {
			return answer{rrs: rrs, authentic: authentic, name: target}, nil
		}
		// The server gave us a CNAME but not what it points to (an authoritative server for another zone does
		// that): ask for the target ourselves.
		cur = target
	}
	return answer{}, &Error{Name: name, Type: dns.TypeToString[qtype], Kind: ErrTemporary,
		Detail: fmt.Sprintf("CNAME chain longer than %d", maxCNAMEHops)}
}

func nxDetail(name, cur string) string {
	if strings.EqualFold(dns.Fqdn(name), cur) {
		return ""
	}
	return "CNAME target " + strings.TrimSuffix(cur, ".") + " does not exist"
}

// followChain walks the CNAMEs in answer from name and returns the final owner name and its records of qtype.
func followChain(answer []dns.RR, name string, qtype uint16) (string, []dns.RR) {
	cur := name
	for range maxCNAMEHops {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) && qtype != dns.TypeCNAME {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		cur = next
	}
	var rrs []dns.RR
	for _, rr := range answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, cur) {
			rrs = append(rrs, rr)
		}
	}
	return cur, rrs
}

// temporaryError collects why every server failed.
type temporaryError struct{ details []string }

func (e *temporaryError) Error() string { return strings.Join(e.details, "; ") }

func (r *Resolver) fail(name string, qtype uint16, err error) error {
	return &Error{Name: name, Type: dns.TypeToString[qtype], Kind: ErrTemporary, Detail: err.Error()}
}

// exchange asks each server in turn until one gives a usable answer (NOERROR or NXDOMAIN), and returns it with
// the server that gave it. SERVFAIL (a validating resolver's answer for bogus data, too), REFUSED, other RCODEs,
// timeouts and network errors move on to the next server; when all fail the error lists them.
//
// Every query sets the AD bit (RFC 6840 5.7): a validating resolver then says whether it validated the answer,
// without the RRSIG records that the DO bit would add to every answer.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.AuthenticatedData = true
	q.SetEdns0(ednsSize, false)

	te := &temporaryError{}
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			te.details = append(te.details, err.Error())
			break
		}
		msg, err := r.exchangeOne(ctx, q, server)
		switch {
		case err != nil:
			te.details = append(te.details, fmt.Sprintf("%v from %s", cleanNetErr(err), server))
		case msg.Rcode == dns.RcodeSuccess || msg.Rcode == dns.RcodeNameError:
			return msg, server, nil
		default:
			te.details = append(te.details, fmt.Sprintf("%s%s from %s", dns.RcodeToString[msg.Rcode], edeText(msg), server))
		}
	}
	return nil, "", te
}

// exchangeOne sends q over UDP and repeats it over TCP when the answer was truncated (RFC 7766).
func (r *Resolver) exchangeOne(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	msg, _, err := c.ExchangeContext(ctx, q, server)
	if err == nil && !msg.Truncated {
		return msg, nil
	}
	if err != nil && !isTruncationErr(err) {
		return nil, err
	}
	c = &dns.Client{Net: "tcp", Timeout: r.timeout}
	msg, _, err = c.ExchangeContext(ctx, q, server)
	if err != nil {
		return nil, fmt.Errorf("over TCP after truncation: %w", err)
	}
	return msg, nil
}

// isTruncationErr reports a reply too large for our buffer, which some servers send instead of setting TC.
func isTruncationErr(err error) bool {
	return errors.Is(err, dns.ErrBuf) || strings.Contains(err.Error(), "overflow")
}

// cleanNetErr shortens "read udp 127.0.0.1:1234->127.0.0.1:53: i/o timeout" to "i/o timeout".
func cleanNetErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
