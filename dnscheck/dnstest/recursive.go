package dnstest

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// StartRecursive starts the DNS of a small internet on loopback, as a mail server meets it: dnsmasq is the
// authoritative server of the records' top-level zones (every name under them that has no record answers
// NXDOMAIN), and a real unbound resolves recursively (its iterator, no cache), reaching dnsmasq through a
// stub zone per top-level zone, as it would reach the internet's name servers through referrals. It returns
// unbound's "127.0.0.1:port"; both stop when the test ends. Names outside those zones are refused: nothing
// leaves the machine.
//
// dnsmasq serves A, AAAA, MX, TXT (strings without commas), PTR and CNAME records; other types fail the test.
// Skips (or fails under PTRELAY_E2E=1) when unbound or dnsmasq is not installed.
func StartRecursive(t testing.TB, records ...string) (addr string) {
	t.Helper()
	rrs := parse(t, records)
	if len(rrs) == 0 {
		t.Fatal("dnstest: StartRecursive needs at least one record")
	}
	authority := StartDnsmasq(t, records...)
	bin := requireProgram(t, "unbound")
	dir := t.TempDir()
	return launchUnbound(t, bin, dir, "recursive unbound", rrs[0], func(port int) string {
		return recursiveConfig(dir, port, authority, rrs)
	})
}

// topZones are the top-level zones ("test.") of the records' owner names.
func topZones(rrs []dns.RR) []string {
	var zones []string
	for _, rr := range rrs {
		labels := dns.SplitDomainName(strings.ToLower(rr.Header().Name))
		if len(labels) == 0 {
			continue
		}
		if z := labels[len(labels)-1] + "."; !slices.Contains(zones, z) {
			zones = append(zones, z)
		}
	}
	slices.Sort(zones)
	return zones
}

// recursiveConfig is an unbound that iterates: a stub zone per top-level zone points at the authority on
// loopback (do-not-query-localhost: no lets it), each such zone and owner name is a transparent local zone so
// that unbound's built-in answers for special-use names (RFC 6761 "test.", the loopback reverse zone) do not
// shadow the authority's data, and "." is refused so that no other name is looked up on the internet.
func recursiveConfig(dir string, port int, authority string, rrs []dns.RR) string {
	host, aport, _ := net.SplitHostPort(authority)
	var b strings.Builder
	b.WriteString(unboundServer(dir, port))
	b.WriteString(`  module-config: "iterator"
  do-not-query-localhost: no
  num-threads: 1
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  local-zone: "." refuse
`)
	transparent := topZones(rrs)
	for _, rr := range rrs {
		if n := strings.ToLower(rr.Header().Name); !slices.Contains(transparent, n) {
			transparent = append(transparent, n)
		}
	}
	for _, z := range transparent {
		fmt.Fprintf(&b, "  local-zone: %q transparent\n", z)
	}
	for _, z := range topZones(rrs) {
		fmt.Fprintf(&b, "stub-zone:\n  name: %q\n  stub-addr: %s@%s\n", z, host, aport)
	}
	b.WriteString("remote-control:\n  control-enable: no\n")
	return b.String()
}

// StartDnsmasq starts dnsmasq on 127.0.0.1 as the only server of the records' top-level zones: it answers
// from the records and NXDOMAIN for other names under those zones, never forwards, and reads no host files.
// It returns "127.0.0.1:port" (UDP and TCP) once it answers, and stops it at the end of the test. The record
// types it can serve are listed at StartRecursive.
func StartDnsmasq(t testing.TB, records ...string) (addr string) {
	t.Helper()
	bin := requireProgram(t, "dnsmasq")
	rrs := parse(t, records)
	if len(rrs) == 0 {
		t.Fatal("dnstest: StartDnsmasq needs at least one record")
	}
	data := dnsmasqRecords(t, rrs)
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("dnstest: free port: %v", err)
		}
		addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		args := []string{"--keep-in-foreground", "--log-facility=-", "--log-queries", "--conf-file=/dev/null",
			"--no-resolv", "--no-hosts", "--no-poll", "--pid-file=", "--bind-interfaces",
			"--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--local-ttl=0"}
		if os.Geteuid() != 0 {
			// As root dnsmasq drops to nobody after binding; anyone else keeps their own user.
			args = append(args, "--user=")
		}
		for _, z := range topZones(rrs) {
			args = append(args, "--local=/"+strings.TrimSuffix(z, ".")+"/")
		}
		lastErr = runServer(t, "dnsmasq", addr, rrs[0], bin, append(args, data...)...)
		if lastErr == nil {
			return addr
		}
		t.Logf("dnstest: dnsmasq on %s: %v; retrying on another port", addr, lastErr)
	}
	t.Fatalf("dnstest: dnsmasq did not start: %v", lastErr)
	return ""
}

// dnsmasqRecords turns records into dnsmasq's options.
func dnsmasqRecords(t testing.TB, rrs []dns.RR) []string {
	t.Helper()
	var args []string
	for _, rr := range rrs {
		name := strings.TrimSuffix(rr.Header().Name, ".")
		switch r := rr.(type) {
		case *dns.A:
			args = append(args, "--host-record="+name+","+r.A.String())
		case *dns.AAAA:
			args = append(args, "--host-record="+name+","+r.AAAA.String())
		case *dns.MX:
			if r.Mx == "." {
				t.Fatalf("dnstest: dnsmasq cannot serve a null MX (%s); use StartUnbound", rr)
			}
			args = append(args, fmt.Sprintf("--mx-host=%s,%s,%d", name, strings.TrimSuffix(r.Mx, "."), r.Preference))
		case *dns.TXT:
			for _, s := range r.Txt {
				if strings.Contains(s, ",") {
					t.Fatalf("dnstest: dnsmasq splits TXT strings at commas: %s", rr)
				}
			}
			args = append(args, "--txt-record="+name+","+strings.Join(r.Txt, ","))
		case *dns.PTR:
			args = append(args, "--ptr-record="+name+","+strings.TrimSuffix(r.Ptr, "."))
		case *dns.CNAME:
			args = append(args, "--cname="+name+","+strings.TrimSuffix(r.Target, "."))
		default:
			t.Fatalf("dnstest: dnsmasq serves no %s records: %s", dns.TypeToString[rr.Header().Rrtype], rr)
		}
	}
	return args
}
