// Package relaytest holds the test helpers shared by ptrelay's packages: it finds and launches the real mail
// peers the end-to-end tests talk to (smtp-sink, a private Postfix smart host, swaks, msmtp, smtp-source), makes
// test certificates, picks loopback ports, and builds and drives the ptrelay binary for tests that need a real
// process (signals, kill -9 recovery).
//
// It is imported only from _test.go files. It knows nothing of ptrelay's internals: peers are configured through
// their own command lines and files, and the daemon through its TOML configuration.
//
// A test that needs an external program calls Require first. When the program is missing the test is skipped
// with the reason and the Debian package to install; with PTRELAY_E2E=1 (set by scripts/test, so CI) it fails
// instead, so that the end-to-end suite cannot silently vanish.
package relaytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// E2EEnv is the environment variable that turns a missing peer from a skip into a failure.
const E2EEnv = "PTRELAY_E2E"

// peer says where a program lives besides $PATH and which Debian package ships it.
type peer struct {
	dirs []string
	pkg  string
}

// sbin holds what Debian installs outside a normal user's PATH: tests run by a non-root developer still find it.
var sbin = []string{"/usr/sbin", "/sbin"}

var peers = map[string]peer{
	"smtp-sink":         {append([]string{"/usr/lib/postfix/sbin"}, sbin...), "postfix"},
	"smtp-source":       {append([]string{"/usr/lib/postfix/sbin"}, sbin...), "postfix"},
	"postfix":           {sbin, "postfix"},
	"postconf":          {sbin, "postfix"},
	"postmap":           {sbin, "postfix"},
	"swaks":             {nil, "swaks"},
	"msmtp":             {nil, "msmtp"},
	"unbound":           {sbin, "unbound"},
	"unbound-checkconf": {sbin, "unbound"},
	"unbound-control":   {sbin, "unbound"},
	"dnsmasq":           {sbin, "dnsmasq-base"},
	"saslpasswd2":       {sbin, "sasl2-bin"},
	"sasldblistusers2":  {sbin, "sasl2-bin"},
	"openssl":           {nil, "openssl"},
	"python3":           {nil, "python3"},
	"systemd-analyze":   {nil, "systemd"},
	"go":                {[]string{"/usr/local/go/bin"}, "golang-go"},
	"ip":                {sbin, "iproute2"},
	"unshare":           {nil, "util-linux"},
	"dpkg-deb":          {nil, "dpkg"},
	"lintian":           {nil, "lintian"},
}

// lookup returns the program's path, or "" when it is not installed.
func lookup(prog string) string {
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	for _, d := range peers[prog].dirs {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Require skips the test (fails it under PTRELAY_E2E=1) unless every named program is installed.
func Require(t testing.TB, progs ...string) {
	t.Helper()
	for _, prog := range progs {
		if lookup(prog) == "" {
			pkg := peers[prog].pkg
			if pkg == "" {
				pkg = prog
			}
			missing(t, "end-to-end test needs "+prog+" (apt-get install "+pkg+")")
		}
	}
}

// RequireRoot skips the test (fails it under PTRELAY_E2E=1) unless it runs as root; a private Postfix
// instance cannot be started otherwise.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "end-to-end test needs root (it starts a private Postfix instance)")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(E2EEnv) != "" && os.Getenv(E2EEnv) != "0" {
		t.Fatal(why + "; " + E2EEnv + " is set, so this is a failure")
	}
	t.Skip(why + "; set " + E2EEnv + "=1 to make this a failure")
}

// Path returns the absolute path of prog, after Require.
func Path(t testing.TB, prog string) string {
	t.Helper()
	Require(t, prog)
	return lookup(prog)
}
