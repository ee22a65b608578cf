package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ptrelay/relay/relaytest"
)

// TestHints_StartErrors: the errors an admin meets when a start fails for the machine's reasons carry the fix for
// that reason: a port taken by another program, a privileged port for an unprivileged user, a data_dir the user
// may not write, a configuration file it may not read. Run as an unprivileged user (nobody) where it matters.
func TestHints_StartErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running ptrelay as another user needs root")
	}
	built := relaytest.BuildBinary(t)
	// A directory everyone may enter, holding a copy of the binary everyone may run.
	pub, err := os.MkdirTemp("", "ptrelay-hints-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "ptrelay")
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(pub, "root-only")
	open := filepath.Join(pub, "open")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(open, 0o777) // past the umask
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	conf := func(name, dataDir, listen string, mode os.FileMode) string {
		p := filepath.Join(pub, name)
		body := fmt.Sprintf("hostname = \"relay.test\"\ndata_dir = %q\n[smtp]\nlisten = [%q]\n"+
			"[egress]\nip = \"192.0.2.1\"\ndiscovery = []\ndnsbl = []\nport25_probe = \"\"\n"+
			"[dns]\nresolvers = [\"127.0.0.1:9\"]\n[admin]\nsocket = %q\n", dataDir, listen, filepath.Join(dataDir, "admin.sock"))
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, mode)
		return p
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	for _, c := range []struct {
		name string
		as   *syscall.Credential
		args []string
		want []string
		not  string
	}{
		{"port in use", nil, []string{"serve", "-config", conf("busy.toml", filepath.Join(open, "busy"), busy.Addr().String(), 0o644)},
			[]string{"address already in use", "another program listens there", "ss -ltnp"}, "ports below 1024"},
		{"privileged port as nobody", nobody, []string{"serve", "-config", conf("port25.toml", filepath.Join(open, "p25"), "127.0.0.1:25", 0o644)},
			[]string{"permission denied", "ports below 1024 need root or CAP_NET_BIND_SERVICE"}, "another program"},
		{"data_dir not writable", nobody, []string{"serve", "-config", conf("data.toml", filepath.Join(private, "data"), "127.0.0.1:0", 0o644)},
			[]string{"permission denied", "ptrelay runs as", "(uid 65534), which may not write there", "chown -R 65534 " + filepath.Join(private, "data")}, ""},
		{"admin socket not reachable", nobody, []string{"queue", "list", "-config", conf("queue.toml", filepath.Join(private, "q"), "127.0.0.1:0", 0o644)},
			[]string{"permission denied", "it is the service's: run this command as root (sudo), or as a member of the group named by admin.socket_group"}, ""},
		{"queue not readable", nobody, []string{"queue", "list", "-config", sockElsewhere(t, conf("q2.toml", filepath.Join(private, "q2"), "127.0.0.1:0", 0o644), filepath.Join(open, "q2.sock"))},
			[]string{"permission denied", "belongs to the service: run this command as root (sudo)"}, ""},
		{"config not readable", nobody, []string{"status", "-config", conf("secret.toml", filepath.Join(open, "s"), "127.0.0.1:0", 0o600)},
			[]string{"permission denied", "run this command as root (sudo), or make the file readable: chmod 644"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			cmd.Dir = pub
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + pub}
			if c.as != nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.as}
			}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%v succeeded:\n%s", c.args, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if c.not != "" && strings.Contains(string(out), c.not) {
				t.Errorf("output has the wrong hint %q:\n%s", c.not, out)
			}
		})
	}
}

// TestCheck_IPv4OnlyNetwork runs `ptrelay check` in a network namespace with IPv4 only (loopback up, an IPv4
// default route, no IPv6 route): the IPv6 line says it is harmless instead of "unknown" with a fix to apply.
func TestCheck_IPv4OnlyNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	relaytest.Require(t, "unshare", "ip")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "ptrelay.toml")
	if err := os.WriteFile(conf, []byte(`hostname = "relay.example.test"
data_dir = "`+filepath.Join(dir, "data")+`"
[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"
[egress]
discovery = ["local"]
dnsbl = []
port25_probe = ""
`), 0o600); err != nil {
		t.Fatal(err)
	}
	script := relaytest.Path(t, "ip") + " link set lo up && " + relaytest.Path(t, "ip") + " route add default dev lo && exec " +
		bin + " check -config " + conf
	out, _ := exec.Command(relaytest.Path(t, "unshare"), "-n", "sh", "-c", script).CombinedOutput()
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "ipv6 egress address") {
			line = l
		}
	}
	if !strings.Contains(line, "none") || !strings.Contains(line, "harmless on an IPv4-only network") ||
		strings.Contains(line, "unknown") {
		t.Errorf("IPv6 line %q in:\n%s", line, out)
	}
}

// sockElsewhere points the configuration file's admin.socket at sock, and returns the file.
func sockElsewhere(t *testing.T, file, sock string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "socket = ")
	if err := os.WriteFile(file, []byte(string(data[:i])+fmt.Sprintf("socket = %q\n", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
