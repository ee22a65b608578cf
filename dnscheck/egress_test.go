package dnscheck_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
)

// whoamiServer answers like resolver1.opendns.com (A/AAAA myip.opendns.com) with the querying address.
func whoamiServer(t *testing.T, host string) *dnstest.Server {
	srv := dnstest.NewAt(t, host)
	srv.Dynamic(dnscheck.WhoamiOpenDNS, func(from netip.AddrPort, q dns.Question) []string {
		a := from.Addr().Unmap()
		if a.Is4() {
			return []string{fmt.Sprintf("%s 0 IN A %s", q.Name, a)}
		}
		return []string{fmt.Sprintf("%s 0 IN AAAA %s", q.Name, a)}
	})
	return srv
}

func TestWhoami_OpenDNSStyle(t *testing.T) {
	srv := whoamiServer(t, "127.0.0.1")
	eg, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{
		Discovery: []string{"dns"}, Whoami: []string{srv.Addr()}, Timeout: time.Second}, dnscheck.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if eg.IP != netip.MustParseAddr("127.0.0.1") || eg.Method != "dns" || eg.Source != srv.Addr() {
		t.Fatalf("got %+v", eg)
	}
	q := srv.Queries()
	if len(q) != 1 || q[0].Name != dnscheck.WhoamiOpenDNS || q[0].Type != dns.TypeA {
		t.Fatalf("queries %+v", q)
	}
}

func TestWhoami_GoogleTXTStyle(t *testing.T) {
	// Like ns1.google.com: no answer for myip.opendns.com, the address in TXT o-o.myaddr.l.google.com.
	srv := dnstest.New(t)
	srv.Dynamic(dnscheck.WhoamiGoogle, func(from netip.AddrPort, q dns.Question) []string {
		return []string{fmt.Sprintf(`%s 0 IN TXT "%s"`, q.Name, from.Addr())}
	})
	eg, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{
		Discovery: []string{"dns"}, Whoami: []string{srv.Addr()}, Timeout: time.Second}, dnscheck.IPv4)
	if err != nil || eg.IP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("got %+v, %v", eg, err)
	}
}

func TestWhoami_IPv6(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		testkit.Missing(t, "test needs the IPv6 loopback address ::1: "+err.Error())
	} else {
		ln.Close()
	}
	srv := whoamiServer(t, "::1")
	eg, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{
		Discovery: []string{"dns"}, Whoami: []string{srv.Addr()}, Timeout: time.Second}, dnscheck.IPv6)
	if err != nil || eg.IP != netip.MustParseAddr("::1") {
		t.Fatalf("got %+v, %v", eg, err)
	}
	if q := srv.Queries(); len(q) != 1 || q[0].Type != dns.TypeAAAA {
		t.Fatalf("queries %+v", q)
	}
}

func TestWhoami_FallsBackToNextServerThenLocal(t *testing.T) {
	dead := dnstest.New(t)
	dead.Fail(dnscheck.WhoamiOpenDNS, 0, dnstest.Timeout)
	dead.Fail(dnscheck.WhoamiGoogle, 0, dnstest.ServFail)
	good := whoamiServer(t, "127.0.0.1")
	o := dnscheck.EgressOptions{Discovery: []string{"dns"}, Whoami: []string{dead.Addr(), good.Addr()},
		Timeout: 300 * time.Millisecond}
	eg, err := dnscheck.DiscoverEgress(ctxT(t), o, dnscheck.IPv4)
	if err != nil || eg.Source != good.Addr() {
		t.Fatalf("got %+v, %v", eg, err)
	}

	// Every whoami server failing, "local" answers: the kernel's source address toward the target.
	target := smtpListener(t)
	o = dnscheck.EgressOptions{Discovery: []string{"dns", "local"}, Whoami: []string{dead.Addr()},
		LocalTargets: map[dnscheck.Family]string{dnscheck.IPv4: target}, Timeout: 300 * time.Millisecond}
	eg, err = dnscheck.DiscoverEgress(ctxT(t), o, dnscheck.IPv4)
	if err != nil || eg.Method != "local" || eg.IP != netip.MustParseAddr("127.0.0.1") || !eg.Private {
		t.Fatalf("got %+v, %v", eg, err)
	}
}

func TestDiscoverEgress_Failures(t *testing.T) {
	dead := dnstest.New(t)
	dead.Fail(dnscheck.WhoamiOpenDNS, 0, dnstest.ServFail)
	dead.Fail(dnscheck.WhoamiGoogle, 0, dnstest.ServFail)
	_, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{Discovery: []string{"dns"},
		Whoami: []string{dead.Addr()}, Timeout: time.Second}, dnscheck.IPv4)
	if !errors.Is(err, dnscheck.ErrNoEgress) {
		t.Fatalf("got %v, want ErrNoEgress", err)
	}
	// A static v4 address says nothing about IPv6.
	_, err = dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{Static: "192.0.2.1"}, dnscheck.IPv6)
	if !errors.Is(err, dnscheck.ErrNoEgress) {
		t.Fatalf("got %v, want ErrNoEgress", err)
	}
	eg, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{Static: "192.0.2.1, 2001:db8::1"}, dnscheck.IPv6)
	if err != nil || eg.IP != netip.MustParseAddr("2001:db8::1") || eg.Method != "static" {
		t.Fatalf("got %+v, %v", eg, err)
	}
	for _, bad := range []string{"192.0.2.1,192.0.2.2", "mail.example.com", "192.0.2.300"} {
		if _, err := dnscheck.ParseStaticEgress(bad); err == nil {
			t.Errorf("ParseStaticEgress(%q) accepted", bad)
		}
	}
}

// TestWhoami_ServerByName: a whoami server given by name is looked up with the configured resolver (a name the
// system's resolver does not know), then asked over the family being discovered.
func TestWhoami_ServerByName(t *testing.T) {
	who := whoamiServer(t, "127.0.0.1")
	_, port, _ := net.SplitHostPort(who.Addr())
	zone := dnstest.New(t, "whoami.ptrelay.test. A 127.0.0.1")
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{zone.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort("whoami.ptrelay.test", port)
	eg, err := dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{Discovery: []string{"dns"}, Whoami: []string{server},
		Resolver: r, Timeout: time.Second}, dnscheck.IPv4)
	if err != nil || eg.IP != netip.MustParseAddr("127.0.0.1") || eg.Source != server {
		t.Fatalf("got %+v, %v", eg, err)
	}
	// Without a resolver a name cannot be reached: no fallback to the system's.
	_, err = dnscheck.DiscoverEgress(ctxT(t), dnscheck.EgressOptions{Discovery: []string{"dns"}, Whoami: []string{server},
		Timeout: time.Second}, dnscheck.IPv4)
	if err == nil || !strings.Contains(err.Error(), "no DNS resolver") {
		t.Errorf("a whoami name without a resolver: %v", err)
	}
}
