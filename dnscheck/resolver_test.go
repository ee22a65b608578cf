package dnscheck_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/relaytest"
)

// scenario is served both by the in-process server and by a real unbound, so the resolver is checked against
// the answers a real recursive server gives, not only against our own fake.
var scenario = []string{
	"two.test. MX 10 mx1.two.test.",
	"two.test. MX 20 mx2.two.test.",
	"mx1.two.test. A 127.0.0.11",
	"mx2.two.test. A 127.0.0.12",
	"equal.test. MX 5 a.equal.test.",
	"equal.test. MX 5 b.equal.test.",
	"equal.test. MX 1 first.equal.test.",
	"nullmx.test. MX 0 .",
	"aonly.test. A 127.0.0.13",
	"dual.test. A 127.0.0.14",
	"dual.test. AAAA ::1",
	"v6only.test. AAAA ::1",
	"txtonly.test. TXT \"v=spf1 \" \"-all\"",
	"alias.test. CNAME two.test.",
	"dangling.test. CNAME missing.test.",
	"11.0.0.127.in-addr.arpa. PTR mx1.two.test.",
	"11.0.0.127.in-addr.arpa. PTR other.two.test.",
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR v6only.test.",
}

func newResolver(t *testing.T, servers ...string) *dnscheck.Resolver {
	t.Helper()
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: servers, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestResolver_InProcess(t *testing.T) {
	srv := dnstest.New(t, scenario...)
	runScenario(t, newResolver(t, srv.Addr()))
}

func TestResolver_Unbound(t *testing.T) {
	relaytest.Require(t, "unbound")
	addr := dnstest.StartUnbound(t, scenario...)
	runScenario(t, newResolver(t, addr))
}

func runScenario(t *testing.T, r *dnscheck.Resolver) {
	ctx := ctxT(t)
	t.Run("MXByPreference", func(t *testing.T) {
		mxs, err := r.LookupMX(ctx, "two.test")
		want := []dnscheck.MX{{Host: "mx1.two.test", Pref: 10}, {Host: "mx2.two.test", Pref: 20}}
		if err != nil || !slices.Equal(mxs, want) {
			t.Fatalf("got %v, %v; want %v", mxs, err, want)
		}
	})
	t.Run("MXEqualPreferenceShuffled", func(t *testing.T) {
		seen := map[string]bool{}
		for range 64 {
			mxs, err := r.LookupMX(ctx, "equal.test.")
			if err != nil || len(mxs) != 3 {
				t.Fatalf("got %v, %v", mxs, err)
			}
			if mxs[0].Host != "first.equal.test" {
				t.Fatalf("lowest preference not first: %v", mxs)
			}
			seen[mxs[1].Host] = true
		}
		if !seen["a.equal.test"] || !seen["b.equal.test"] {
			t.Fatalf("equal preferences never reordered in 64 lookups: %v", seen)
		}
	})
	t.Run("ImplicitMX", func(t *testing.T) {
		mxs, err := r.LookupMX(ctx, "aonly.test")
		want := []dnscheck.MX{{Host: "aonly.test", Implicit: true}}
		if err != nil || !slices.Equal(mxs, want) {
			t.Fatalf("got %v, %v; want %v", mxs, err, want)
		}
	})
	t.Run("NullMX", func(t *testing.T) {
		_, err := r.LookupMX(ctx, "nullmx.test")
		wantErr(t, err, dnscheck.ErrNullMX)
	})
	t.Run("MXNXDomain", func(t *testing.T) {
		_, err := r.LookupMX(ctx, "nope.test")
		wantErr(t, err, dnscheck.ErrNXDomain)
	})
	t.Run("MXThroughCNAME", func(t *testing.T) {
		mxs, err := r.LookupMX(ctx, "alias.test")
		if err != nil || len(mxs) != 2 || mxs[0].Host != "mx1.two.test" {
			t.Fatalf("got %v, %v", mxs, err)
		}
	})
	t.Run("DanglingCNAME", func(t *testing.T) {
		_, err := r.LookupMX(ctx, "dangling.test")
		wantErr(t, err, dnscheck.ErrNXDomain)
	})
	t.Run("AddrsIPv4First", func(t *testing.T) {
		addrs, err := r.LookupAddrs(ctx, "dual.test")
		want := []netip.Addr{netip.MustParseAddr("127.0.0.14"), netip.MustParseAddr("::1")}
		if err != nil || !slices.Equal(addrs, want) {
			t.Fatalf("got %v, %v; want %v", addrs, err, want)
		}
	})
	t.Run("AddrsV6Only", func(t *testing.T) {
		addrs, err := r.LookupAddrs(ctx, "v6only.test")
		if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("::1")}) {
			t.Fatalf("got %v, %v", addrs, err)
		}
		_, err = r.LookupA(ctx, "v6only.test")
		wantErr(t, err, dnscheck.ErrNoAddress)
	})
	t.Run("AddrsNone", func(t *testing.T) {
		_, err := r.LookupAddrs(ctx, "txtonly.test")
		wantErr(t, err, dnscheck.ErrNoAddress)
	})
	t.Run("AddrsNXDomain", func(t *testing.T) {
		_, err := r.LookupAddrs(ctx, "nope.two.test")
		wantErr(t, err, dnscheck.ErrNXDomain)
	})
	t.Run("PTR", func(t *testing.T) {
		names, err := r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.11"))
		slices.Sort(names)
		if err != nil || !slices.Equal(names, []string{"mx1.two.test", "other.two.test"}) {
			t.Fatalf("got %v, %v", names, err)
		}
		names, err = r.LookupPTR(ctx, netip.MustParseAddr("::1"))
		if err != nil || !slices.Equal(names, []string{"v6only.test"}) {
			t.Fatalf("v6: got %v, %v", names, err)
		}
		_, err = r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.99"))
		wantErr(t, err, dnscheck.ErrNXDomain)
	})
	t.Run("TXTJoined", func(t *testing.T) {
		txts, err := r.LookupTXT(ctx, "txtonly.test")
		if err != nil || !slices.Equal(txts, []string{"v=spf1 -all"}) {
			t.Fatalf("got %q, %v", txts, err)
		}
		txts, err = r.LookupTXT(ctx, "aonly.test")
		if err != nil || len(txts) != 0 {
			t.Fatalf("NODATA: got %q, %v", txts, err)
		}
	})
}

func wantErr(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got error %v, want %v", err, kind)
	}
	var de *dnscheck.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *dnscheck.Error", err)
	}
	for _, other := range []error{dnscheck.ErrTemporary, dnscheck.ErrNXDomain, dnscheck.ErrNullMX, dnscheck.ErrNoAddress} {
		if other != kind && errors.Is(err, other) {
			t.Fatalf("error %v is also %v", err, other)
		}
	}
}

func TestResolver_Failures(t *testing.T) {
	srv := dnstest.New(t, scenario...)
	srv.Fail("servfail.test", dns.TypeMX, dnstest.ServFail)
	srv.Fail("refused.test", 0, dnstest.Refused)
	srv.Fail("slow.test", dns.TypeMX, dnstest.Timeout)
	srv.Fail("dual.test", dns.TypeAAAA, dnstest.ServFail)
	srv.Fail("aonly.test", dns.TypeAAAA, dnstest.ServFail)
	srv.Fail("txtonly.test", dns.TypeA, dnstest.ServFail)
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)

	for _, name := range []string{"servfail.test", "refused.test", "slow.test"} {
		t.Run(name, func(t *testing.T) {
			_, err := r.LookupMX(ctx, name)
			wantErr(t, err, dnscheck.ErrTemporary)
		})
	}
	t.Run("AddrsOneFamilyFails", func(t *testing.T) {
		// dual.test: A answers, AAAA SERVFAILs: what was found is usable.
		addrs, err := r.LookupAddrs(ctx, "dual.test")
		if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("127.0.0.14")}) {
			t.Fatalf("got %v, %v", addrs, err)
		}
		// aonly.test: A answers, AAAA SERVFAILs.
		if addrs, err = r.LookupAddrs(ctx, "aonly.test"); err != nil || len(addrs) != 1 {
			t.Fatalf("got %v, %v", addrs, err)
		}
	})
	t.Run("AddrsTemporaryBeatsNoAddress", func(t *testing.T) {
		// txtonly.test: A SERVFAILs and AAAA is NODATA: we cannot say "no address".
		_, err := r.LookupAddrs(ctx, "txtonly.test")
		wantErr(t, err, dnscheck.ErrTemporary)
	})
	t.Run("ClosedPort", func(t *testing.T) {
		r := newResolver(t, closedPort(t))
		_, err := r.LookupMX(ctx, "two.test")
		wantErr(t, err, dnscheck.ErrTemporary)
	})
	t.Run("CanceledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := r.LookupMX(cctx, "two.test")
		wantErr(t, err, dnscheck.ErrTemporary)
	})
}

// closedPort returns a loopback UDP port that nobody listens on (it was free a moment ago).
func closedPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// An authoritative server for another zone answers with the CNAME alone: the resolver asks for the target.
func TestResolver_FollowsBareCNAME(t *testing.T) {
	srv := dnstest.New(t, scenario...)
	srv.Dynamic("ext.test", func(netip.AddrPort, dns.Question) []string {
		return []string{"ext.test. CNAME two.test."}
	})
	r := newResolver(t, srv.Addr())
	mxs, err := r.LookupMX(ctxT(t), "ext.test")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "mx1.two.test" {
		t.Fatalf("got %v, %v", mxs, err)
	}
	var asked []string
	for _, q := range srv.Queries() {
		asked = append(asked, q.Name)
	}
	if !slices.Equal(asked, []string{"ext.test.", "two.test."}) {
		t.Fatalf("asked %v", asked)
	}
	// A CNAME loop ends with a temporary error, not a hang.
	srv.Dynamic("loop1.test", func(netip.AddrPort, dns.Question) []string { return []string{"loop1.test. CNAME loop2.test."} })
	srv.Dynamic("loop2.test", func(netip.AddrPort, dns.Question) []string { return []string{"loop2.test. CNAME loop1.test."} })
	_, err = r.LookupMX(ctxT(t), "loop1.test")
	wantErr(t, err, dnscheck.ErrTemporary)
}

func TestResolver_NullMXBesideRealMX(t *testing.T) {
	srv := dnstest.New(t, "mixed.test. MX 0 .", "mixed.test. MX 10 mx.mixed.test.")
	mxs, err := newResolver(t, srv.Addr()).LookupMX(ctxT(t), "mixed.test")
	if err != nil || !slices.Equal(mxs, []dnscheck.MX{{Host: "mx.mixed.test", Pref: 10}}) {
		t.Fatalf("got %v, %v", mxs, err)
	}
}

func TestResolver_Failover(t *testing.T) {
	bad := dnstest.New(t, scenario...)
	bad.Fail("two.test", 0, dnstest.ServFail)
	good := dnstest.New(t, scenario...)
	r := newResolver(t, bad.Addr(), good.Addr())
	mxs, err := r.LookupMX(ctxT(t), "two.test")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("got %v, %v", mxs, err)
	}
	if len(bad.Queries()) != 1 || len(good.Queries()) != 1 {
		t.Fatalf("queries: bad %v, good %v", bad.Queries(), good.Queries())
	}
	// An NXDOMAIN is an answer: the next server is not asked.
	_, err = r.LookupMX(ctxT(t), "nope.test")
	wantErr(t, err, dnscheck.ErrNXDomain)
	if n := len(good.Queries()); n != 1 {
		t.Fatalf("good server asked %d times, want 1 (NXDOMAIN from the first server is final)", n)
	}
}

func TestResolver_TruncatedRetriesOverTCP(t *testing.T) {
	var recs []string
	for i := range 60 {
		recs = append(recs, fmt.Sprintf("big.test. TXT \"record number %02d with some padding to make the answer large\"", i))
	}
	srv := dnstest.New(t, recs...)
	r := newResolver(t, srv.Addr())
	txts, err := r.LookupTXT(ctxT(t), "big.test")
	if err != nil || len(txts) != 60 {
		t.Fatalf("got %d records, %v; want 60", len(txts), err)
	}
	var nets []string
	for _, q := range srv.Queries() {
		nets = append(nets, q.Net)
	}
	if !slices.Equal(nets, []string{"udp", "tcp"}) {
		t.Fatalf("transports used: %v, want [udp tcp]", nets)
	}
}

func TestResolver_Unbound_TruncatedRetriesOverTCP(t *testing.T) {
	relaytest.Require(t, "unbound")
	var recs []string
	for i := range 60 {
		recs = append(recs, fmt.Sprintf("big.test. TXT \"record number %02d with some padding to make the answer large\"", i))
	}
	r := newResolver(t, dnstest.StartUnbound(t, recs...))
	txts, err := r.LookupTXT(ctxT(t), "big.test")
	if err != nil || len(txts) != 60 {
		t.Fatalf("got %d records, %v; want 60", len(txts), err)
	}
}

func TestNewResolver_BadServer(t *testing.T) {
	if _, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{"127.0.0.1"}}); err == nil {
		t.Fatal("server without port accepted")
	}
}
