package relaytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientTimeout bounds one run of a client program; a hung peer fails the test instead of stalling the suite.
const clientTimeout = 60 * time.Second

// Swaks runs swaks with args and returns its transcript; err is non-nil when swaks exits non-zero (it does for
// any unexpected reply). Typical use:
//
//	out, err := relaytest.Swaks(t, "--server", addr, "--from", "a@example.test", "--to", "b@example.org")
func Swaks(t testing.TB, args ...string) (output string, err error) {
	t.Helper()
	bin := Path(t, "swaks")
	return run(t, clientTimeout, nil, bin, args...)
}

// SmtpSource runs smtp-source (the Postfix load generator) with args, e.g.
// SmtpSource(t, "-s", "5", "-m", "100", "-f", "a@example.test", "-t", "b@example.org", addr).
func SmtpSource(t testing.TB, args ...string) (output string, err error) {
	t.Helper()
	bin := Path(t, "smtp-source")
	return run(t, 5*clientTimeout, nil, bin, args...)
}

// MsmtpConfig is one msmtp account.
type MsmtpConfig struct {
	Host     string
	Port     int
	From     string // envelope sender
	Domain   string // EHLO argument; default "client.test"
	TLS      bool   // use TLS at all
	STARTTLS bool   // with TLS: STARTTLS (true) or implicit TLS (false)
	// TrustFile is a PEM CA file (MakeCert's certFile); empty with TLS turns certificate checks off.
	TrustFile string
	Auth      string // "" (off), "on", "plain", "login"...
	User      string
	Password  string
	Extra     []string // more msmtprc lines for the account, e.g. "tls_min_dh_prime_bits 512"
}

// Msmtp sends message (header and body, CRLF or LF) to the recipients with msmtp and returns msmtp's debug
// transcript; err is non-nil when msmtp fails.
func Msmtp(t testing.TB, cfg MsmtpConfig, to []string, message []byte) (output string, err error) {
	t.Helper()
	bin := Path(t, "msmtp")
	var rc strings.Builder
	line := func(k, v string) { fmt.Fprintf(&rc, "%s %s\n", k, v) }
	rc.WriteString("account test\n")
	line("host", cfg.Host)
	line("port", fmt.Sprint(cfg.Port))
	line("from", cfg.From)
	if cfg.Domain == "" {
		cfg.Domain = "client.test"
	}
	line("domain", cfg.Domain)
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	line("tls", onOff(cfg.TLS))
	if cfg.TLS {
		line("tls_starttls", onOff(cfg.STARTTLS))
		if cfg.TrustFile != "" {
			line("tls_trust_file", cfg.TrustFile)
		} else {
			line("tls_certcheck", "off")
		}
	}
	if cfg.Auth == "" {
		line("auth", "off")
	} else {
		line("auth", cfg.Auth)
		line("user", cfg.User)
		line("password", cfg.Password)
	}
	for _, e := range cfg.Extra {
		rc.WriteString(e + "\n")
	}
	rc.WriteString("account default : test\n")
	// msmtp refuses a configuration file that holds a password and is readable by others.
	file := filepath.Join(t.TempDir(), "msmtprc")
	if err := os.WriteFile(file, []byte(rc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-C", file, "-d", "--"}, to...)
	return run(t, clientTimeout, message, bin, args...)
}
