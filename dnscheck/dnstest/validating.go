package dnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Zone is one zone of the DNSSEC test internet that StartValidating serves.
type Zone struct {
	Name    string   // "secure.test."
	Records []string // zone-file lines with fully qualified owner names; SOA and NS are added
	// Signed: the zone is signed (ldns-signzone) and its DS is in the signed root zone, so a validating
	// resolver finds it secure. Unsigned zones are delegated without a DS: insecure.
	Signed bool
	// Tamper, for a signed zone, edits the signed zone file after signing (say, changes a TLSA record's data
	// and leaves its signature): the zone becomes bogus and the validating resolver answers SERVFAIL for the
	// tampered name.
	Tamper func(signedZone string) string
}

// StartValidating starts a small DNSSEC internet on loopback: a root zone signed at test time with its own key,
// delegating to zones, signed ones with their DS records; a real unbound, validating with the test root key as
// its trust anchor, serves them (its auth-zones play the authoritative servers; it resolves and validates as it
// would on the internet). It returns unbound's "127.0.0.1:port"; unbound stops when the test ends.
//
// The root zone is signed, so a probe of "." (NS) comes back authentic, as it does from a validating resolver
// on the internet. Keys are ECDSA P-256 (algorithm 13); signatures are valid for ldns-signzone's default of
// four weeks, so nothing signed is ever committed. Skips (or fails under PTRELAY_E2E=1) when unbound or
// ldnsutils is missing.
func StartValidating(t testing.TB, zones ...Zone) (addr string) {
	t.Helper()
	bin := requireProgram(t, "unbound")
	keygen := requireProgram(t, "ldns-keygen")
	signzone := requireProgram(t, "ldns-signzone")
	dir := t.TempDir()
	sign := func(name, file string) (ds string) {
		t.Helper()
		ksk := run(t, dir, keygen, "-a", "ECDSAP256SHA256", "-k", name)
		zsk := run(t, dir, keygen, "-a", "ECDSAP256SHA256", name)
		run(t, dir, signzone, file, ksk, zsk)
		out, err := os.ReadFile(filepath.Join(dir, ksk+".ds"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}

	root := []string{
		". 300 IN SOA ns.root-servers.test. hostmaster.root-servers.test. 1 3600 600 86400 300",
		". 300 IN NS ns.root-servers.test.",
		"ns.root-servers.test. 300 IN A 127.0.0.1",
	}
	var authZones []string
	for i, z := range zones {
		name := dns.Fqdn(strings.ToLower(z.Name))
		file := filepath.Join(dir, fmt.Sprintf("zone%d", i))
		lines := []string{
			name + " 300 IN SOA ns." + name + " hostmaster." + name + " 1 3600 600 86400 300",
			name + " 300 IN NS ns." + name,
			"ns." + name + " 300 IN A 127.0.0.1",
		}
		lines = append(lines, z.Records...)
		writeZone(t, file, lines)
		root = append(root, name+" 300 IN NS ns."+name, "ns."+name+" 300 IN A 127.0.0.1")
		if z.Signed {
			root = append(root, sign(name, file))
			file += ".signed"
			if z.Tamper != nil {
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(z.Tamper(string(b))), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		authZones = append(authZones, authZone(name, file))
	}
	rootFile := filepath.Join(dir, "root")
	writeZone(t, rootFile, root)
	rootDS := sign(".", rootFile)
	anchor := filepath.Join(dir, "root.ds")
	if err := os.WriteFile(anchor, []byte(rootDS+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authZones = append([]string{authZone(".", rootFile+".signed")}, authZones...)

	probe, err := dns.NewRR(". 300 IN NS ns.root-servers.test.")
	if err != nil {
		t.Fatal(err)
	}
	return launchUnbound(t, bin, dir, "validating unbound", probe, func(port int) string {
		return validatingConfig(dir, port, anchor, zones, authZones)
	})
}

// run runs a program in dir and returns its output's first line (ldns-keygen prints the key's base name).
func run(t testing.TB, dir, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("dnstest: %s %s: %v: %s", filepath.Base(prog), strings.Join(args, " "), err, stderr)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// writeZone writes zone-file lines after checking that each parses.
func writeZone(t testing.TB, file string, lines []string) {
	t.Helper()
	for _, l := range lines {
		if _, err := dns.NewRR(l); err != nil {
			t.Fatalf("dnstest: bad record %q: %v", l, err)
		}
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func authZone(name, file string) string {
	return fmt.Sprintf("auth-zone:\n  name: %q\n  zonefile: %q\n  for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n", name, file)
}

// validatingConfig is an unbound that validates (module-config "validator iterator") with the test root key as
// its only trust anchor, and resolves from auth-zones instead of the internet. unbound's built-in answers for
// special-use names (RFC 6761 "test.") are switched off for the zones' top-level domains.
func validatingConfig(dir string, port int, anchor string, zones []Zone, authZones []string) string {
	var tops []string
	for _, z := range zones {
		labels := dns.SplitDomainName(strings.ToLower(z.Name))
		if len(labels) == 0 {
			continue
		}
		if top := labels[len(labels)-1] + "."; !slices.Contains(tops, top) {
			tops = append(tops, top)
		}
	}
	var b strings.Builder
	b.WriteString(unboundServer(dir, port))
	fmt.Fprintf(&b, `  module-config: "validator iterator"
  trust-anchor-file: %q
  do-not-query-localhost: no
  num-threads: 1
  ede: yes
  val-log-level: 2
`, anchor)
	for _, top := range tops {
		fmt.Fprintf(&b, "  local-zone: %q nodefault\n", top)
	}
	for _, z := range authZones {
		b.WriteString(z)
	}
	b.WriteString("remote-control:\n  control-enable: no\n")
	return b.String()
}
