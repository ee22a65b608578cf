package relay

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/internal/testkit"
)

// startRelay runs a daemon in-process on a loopback port with the given extra TOML and returns it with its
// SMTP address; it stops when the test ends and the stop must be clean.
func startRelay(t *testing.T, extra string) (*Relay, string) {
	return startRelayWith(t, extra, "")
}

// startRelayWith is startRelay with extra keys for the [admin] section too.
func startRelayWith(t *testing.T, extra, adminExtra string) (*Relay, string) {
	return startRelayFull(t, extra, adminExtra, "127.0.0.1:9")
}

// startRelayWithSmarthost is startRelay with the smart host (tls none, no AUTH) at smarthost.
func startRelayWithSmarthost(t *testing.T, extra, smarthost string) (*Relay, string) {
	return startRelayFull(t, extra, "", smarthost)
}

func startRelayFull(t *testing.T, extra, adminExtra, smarthost string) (*Relay, string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname = "relay.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
%s
[[smarthosts]]
name = "isp"
address = %q
tls = "none"
[routing]
mode = "smarthost"
[egress]
ip = "192.0.2.1"
discovery = []
dnsbl = []
port25_probe = ""
[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"
[admin]
socket = %q
%s
`, dir, extra, smarthost, filepath.Join(dir, "admin.sock"), adminExtra)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, "Relay.Run", r.Run)
	return r, r.listeners[0].Addr().String()
}

func TestStatus_RecordsTLSVersionPerClient(t *testing.T) {
	r, addr := startRelay(t, `tls_cert = "auto"
tls_legacy = true`)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A Windows 2008-style client: TLS 1.0 with an ECDHE-RSA CBC suite.
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10,
		MaxVersion: tls.VersionTLS10, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("sbs2008.contoso.local"); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()

	testkit.WaitFor(t, 10*time.Second, "a TLS client in status after a TLS 1.0 session", func() bool {
		return len(r.status().TLSClients) > 0
	})
	st := r.status()
	if got := st.TLSClients[0]; len(st.TLSClients) != 1 || got.Client != "127.0.0.1" || got.Version != "TLS1.0" ||
		got.Cipher != "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" || !got.Legacy() {
		t.Fatalf("TLS clients recorded as %+v", st.TLSClients)
	}
}

func TestAdminSocket_GroupMode(t *testing.T) {
	testkit.RequireRoot(t, "it gives the admin socket to another group")
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		testkit.Missing(t, "test needs the group nogroup (Debian's base-passwd): "+err.Error())
	}
	r, _ := startRelayWith(t, "", `socket_group = "nogroup"`)
	fi, err := os.Stat(r.cfg.Load().AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || fmt.Sprint(st.Gid) != g.Gid {
		t.Fatalf("admin socket mode %v gid %d, want 0660 and group nogroup (%s)", fi.Mode().Perm(), st.Gid, g.Gid)
	}
}

func TestAdminSocket_DefaultMode(t *testing.T) {
	r, _ := startRelay(t, "")
	fi, err := os.Stat(r.cfg.Load().AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want 0600", fi.Mode().Perm())
	}
}

// A reload that changes a key only a restart applies keeps naming it in status until the restart, over later
// reloads; a reload that changes it back clears it.
func TestReload_PendingRestartKeys(t *testing.T) {
	r, _ := startRelay(t, "")
	base := *r.cfg.Load()
	reload := func(change func(c *config.Config)) []string {
		t.Helper()
		c := base
		c.DNS.Resolvers = append([]string(nil), base.DNS.Resolvers...)
		change(&c)
		if err := r.Reload(&c); err != nil {
			t.Fatal(err)
		}
		return r.status().PendingRestart
	}
	if got := reload(func(c *config.Config) { c.DNS.Timeout = config.Duration(3 * time.Second) }); fmt.Sprint(got) != "[dns.timeout]" {
		t.Fatalf("after changing dns.timeout: pending %v", got)
	}
	if got := reload(func(c *config.Config) {
		c.DNS.Timeout = config.Duration(3 * time.Second)
		c.SMTP.MaxRecipients = 7
	}); fmt.Sprint(got) != "[dns.timeout]" {
		t.Fatalf("a second reload forgot the pending key: %v", got)
	}
	if got := reload(func(c *config.Config) {}); len(got) != 0 {
		t.Fatalf("after changing it back: pending %v", got)
	}
}
