// Package relaytest holds the test helpers shared by ptrelay's packages: it finds and launches the real mail
// peers the end-to-end tests talk to (smtp-sink, a private Postfix as smart host or as MX, swaks, msmtp,
// smtp-source), makes test certificates and a test CA, picks loopback ports, and builds and drives the ptrelay
// binary for tests that need a real process (signals, kill -9 recovery, the system's trusted roots).
//
// It is imported only from _test.go files. It knows nothing of ptrelay's internals: peers are configured through
// their own command lines and files, and the daemon through its TOML configuration.
//
// A test that needs an external program calls Require first. When the program is missing the test is skipped
// with the reason and the Debian package to install; with PTRELAY_E2E=1 (set by scripts/test, so CI) it fails
// instead, so that the end-to-end suite cannot silently vanish (internal/testkit.Missing decides).
package relaytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"ptrelay/internal/testkit"
)

// E2EEnv is the environment variable that turns a missing peer from a skip into a failure.
const E2EEnv = testkit.E2EEnv

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
	"chromium":          {nil, "chromium"},
	"dkimverify":        {nil, "python3-dkim"},
	"opendkim":          {sbin, "opendkim"},
	"opendkim-testmsg":  {sbin, "opendkim-tools"},
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
			testkit.Missing(t, "end-to-end test needs "+prog+" (apt-get install "+pkg+")")
		}
	}
}

// RequireRoot skips the test (fails it under PTRELAY_E2E=1) unless it runs as root; a private Postfix
// instance cannot be started otherwise.
func RequireRoot(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t, "it starts a private Postfix instance")
}

// Path returns the absolute path of prog, after Require.
func Path(t testing.TB, prog string) string {
	t.Helper()
	Require(t, prog)
	return lookup(prog)
}
