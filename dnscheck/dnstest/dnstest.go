// Package dnstest runs DNS servers for tests: an in-process miekg/dns server on 127.0.0.1 (UDP and TCP on one
// port) that serves a zone map and injects failures, and launchers for real servers given the same records: an
// unbound serving them as local data (StartUnbound), dnsmasq as their authoritative server (StartDnsmasq), and
// both together, unbound resolving recursively from dnsmasq (StartRecursive).
//
// Unknown names answer NXDOMAIN, so nothing a test asks leaks to the real DNS. It imports nothing of ptrelay
// but the shared test helpers (internal/testkit).
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Failure is an injected fault for one name and type.
type Failure int

const (
	ServFail Failure = iota + 1 // answer SERVFAIL
	Refused                     // answer REFUSED
	Timeout                     // never answer
	Bogus                       // SERVFAIL with EDE 6 "DNSSEC Bogus", as a validating resolver answers forged data
)

// Query is one question the server received.
type Query struct {
	From netip.AddrPort
	Net  string // "udp" or "tcp"
	Name string // lower case, fully qualified
	Type uint16
}

// AnswerFunc computes records for a query at run time, as zone-file lines (e.g. whoami answers). Records of
// the type asked and CNAMEs are sent; an empty answer is NODATA.
type AnswerFunc func(from netip.AddrPort, q dns.Question) []string

type key struct {
	name  string
	qtype uint16
}

// Server is an in-process authoritative DNS server for tests. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	addr string

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lower-case owner name
	fail    map[key]Failure
	dynamic map[string]AnswerFunc
	secure  []string // zones whose answers carry the AD bit (Secure)
	queries []Query
}

// New starts a server on 127.0.0.1 serving records (zone-file lines with fully qualified names, e.g.
// "example.test. MX 10 mx1.example.test."; TTL and class may be left out). It stops at the end of the test.
func New(t testing.TB, records ...string) *Server {
	t.Helper()
	return NewAt(t, "127.0.0.1", records...)
}

// NewAt is New on another loopback address, such as "::1" for IPv6 tests.
func NewAt(t testing.TB, host string, records ...string) *Server {
	t.Helper()
	s := &Server{t: t, rrs: map[string][]dns.RR{}, fail: map[key]Failure{}, dynamic: map[string]AnswerFunc{}}
	s.Add(records...)
	pc, ln := listenPair(t, host)
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(s.serve)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				t.Logf("dnstest: serve: %v", err)
			}
		}()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

// listenPair opens UDP and TCP on the same free loopback port.
func listenPair(t testing.TB, host string) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("dnstest: no port free for both UDP and TCP")
	return nil, nil
}

// Addr returns "127.0.0.1:port" (or "[::1]:port"), for ResolverOptions.Servers.
func (s *Server) Addr() string { return s.addr }

// Add adds records (zone-file lines); a bad line fails the test.
func (s *Server) Add(records ...string) {
	s.t.Helper()
	rrs := parse(s.t, records)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		n := strings.ToLower(rr.Header().Name)
		s.rrs[n] = append(s.rrs[n], rr)
	}
}

// Remove deletes every record of qtype at name (0: every type).
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canon(name)
	kept := s.rrs[n][:0]
	for _, rr := range s.rrs[n] {
		if qtype != 0 && rr.Header().Rrtype != qtype {
			kept = append(kept, rr)
		}
	}
	if len(kept) == 0 {
		delete(s.rrs, n)
	} else {
		s.rrs[n] = kept
	}
}

// Fail makes queries for name and qtype (0: any type) fail with f; 0 clears it.
func (s *Server) Fail(name string, qtype uint16, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{canon(name), qtype}
	if f == 0 {
		delete(s.fail, k)
	} else {
		s.fail[k] = f
	}
}

// Secure makes the server answer like a validating resolver for zone and every name below it: each answer
// (NXDOMAIN and NODATA included) carries the AD bit when the query asked with AD or DO (RFC 6840 5.7). Names
// outside every secure zone answer without it, as an insecure (unsigned) zone does.
func (s *Server) Secure(zones ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range zones {
		s.secure = append(s.secure, canon(z))
	}
}

// Insecure undoes Secure for zone.
func (s *Server) Insecure(zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := canon(zone)
	kept := s.secure[:0]
	for _, x := range s.secure {
		if x != z {
			kept = append(kept, x)
		}
	}
	s.secure = kept
}

func (s *Server) secureLocked(name string) bool {
	for _, z := range s.secure {
		if name == z || z == "." || strings.HasSuffix(name, "."+z) {
			return true
		}
	}
	return false
}

// Dynamic answers queries for name with fn, which sees the querying address (whoami servers).
func (s *Server) Dynamic(name string, fn AnswerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dynamic[canon(name)] = fn
}

// Queries returns the questions received so far, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

func canon(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func parse(t testing.TB, records []string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, line := range records {
		rr, err := dns.NewRR(line)
		if err != nil || rr == nil {
			t.Fatalf("dnstest: bad record %q: %v", line, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	from, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	name := canon(q.Name)

	s.mu.Lock()
	s.queries = append(s.queries, Query{From: from, Net: network, Name: name, Type: q.Qtype})
	f, failing := s.fail[key{name, q.Qtype}]
	if !failing {
		f, failing = s.fail[key{name, 0}]
	}
	dyn := s.dynamic[name]
	secure := s.secureLocked(name)
	s.mu.Unlock()

	if failing {
		switch f {
		case Timeout:
			return
		case Refused:
			m.Rcode = dns.RcodeRefused
		case Bogus:
			m.Rcode = dns.RcodeServerFailure
			m.SetEdns0(dns.DefaultMsgSize, false)
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "validation failure"})
		default:
			m.Rcode = dns.RcodeServerFailure
		}
		_ = w.WriteMsg(m)
		return
	}
	if opt := req.IsEdns0(); secure && (req.AuthenticatedData || (opt != nil && opt.Do())) {
		m.AuthenticatedData = true
	}

	m.Authoritative = true
	m.RecursionAvailable = true
	if dyn != nil {
		for _, line := range dyn(from, q) {
			rr, err := dns.NewRR(line)
			if err != nil || rr == nil {
				s.t.Errorf("dnstest: dynamic answer for %s: bad record %q: %v", name, line, err)
				continue
			}
			// A CNAME is kept whatever the type asked: an answer that points elsewhere without following the
			// chain is how authoritative servers for another zone answer.
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
	} else {
		var exists bool
		m.Answer, exists = s.resolve(name, q.Qtype)
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size) // sets TC when records had to go, so the client retries over TCP
	}
	_ = w.WriteMsg(m)
}

// resolve answers like an authoritative server: the records of qtype, following CNAMEs inside the zone map.
// exists is false when the last name in the chain has no records and no names below it (NXDOMAIN).
func (s *Server) resolve(name string, qtype uint16) (answer []dns.RR, exists bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 8 {
		rrs := s.rrs[name]
		var cname *dns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				answer = append(answer, dns.Copy(rr))
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if len(rrs) == 0 {
			return answer, s.hasBelowLocked(name)
		}
		if cname == nil || qtype == dns.TypeCNAME || len(answer) > 0 {
			return answer, true
		}
		answer = append(answer, dns.Copy(cname))
		name = strings.ToLower(cname.Target)
	}
	return answer, true
}

// hasBelowLocked reports an empty non-terminal: a name without records of its own but with names below it.
func (s *Server) hasBelowLocked(name string) bool {
	for n := range s.rrs {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}
