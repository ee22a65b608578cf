package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// TestSecrets_OnlyServeNeedsTheCredential: with the smart-host password handed over by systemd's LoadCredential
// (no password_file), an admin's shell has no $CREDENTIALS_DIRECTORY. The admin commands must still work there;
// only `serve` refuses to start without the password, and starts once the credential is there.
func TestSecrets_OnlyServeNeedsTheCredential(t *testing.T) {
	relaytest.Require(t, "go")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", relaytest.FreePort(t, "127.0.0.1"))
	conf := filepath.Join(dir, "ptrelay.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "relay.test"
data_dir = %q
[smtp]
listen = [%q]
[[smarthosts]]
name = "smarthost"
address = "smtp.isp.example:587"
username = "relay"
[egress]
ip = "192.0.2.10"
discovery = []
dnsbl = []
port25_probe = ""
[dns]
resolvers = ["127.0.0.1:9"]
`, filepath.Join(dir, "data"), addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(bin, append(args, "-config", conf)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	noCreds := []string{"CREDENTIALS_DIRECTORY="}

	// The shell says once where the password will come from, instead of warning that there is none.
	if out, code := run(noCreds, "config", "check"); code != 0 || !strings.Contains(out, "note: smarthosts[1].password_file") ||
		!strings.Contains(out, "LoadCredential=smarthost:/etc/ptrelay/smarthost.pass") || strings.Contains(out, "there is no password") {
		t.Errorf("config check without the credential: exit %d, want 0 with a note naming LoadCredential:\n%s", code, out)
	}
	if out, code := run(noCreds, "serve"); code != 1 || !strings.Contains(out, "smarthosts[1].password_file: is empty and there is no password") {
		t.Errorf("serve without the credential: exit %d, want 1 naming the key:\n%s", code, out)
	}

	// The unit's SetCredential=smarthost:\n fallback (no /etc/ptrelay/smarthost.pass): an empty password. The
	// daemon starts (mail queues), and says loudly at start where to write the password.
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "smarthost"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := exec.Command(bin, "serve", "-config", conf)
	serve.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds, "NOTIFY_SOCKET=")
	serve.Dir = dir
	var log syncBuffer
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	relaytest.WaitTCP(t, addr, 30*time.Second)
	testkit.WaitForExplained(t, 10*time.Second, log.String, func() bool {
		return strings.Contains(log.String(), "level=ERROR") &&
			strings.Contains(log.String(), "write the password into /etc/ptrelay/smarthost.pass")
	})

	// The admin's shell, without the credential, reaches the running daemon.
	for _, args := range [][]string{{"queue", "list"}, {"status"}} {
		if out, code := run(noCreds, args...); code != 0 {
			t.Errorf("%v in a shell without the credential: exit %d:\n%s", args, code, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecrets_ConfigCheckRefusesMismatchedPair: `config check` refuses a certificate and key that do not belong
// together, or are swapped, as serve does, so "check, then reload" holds.
func TestSecrets_ConfigCheckRefusesMismatchedPair(t *testing.T) {
	relaytest.Require(t, "go")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	certA, keyA, _ := relaytest.MakeCert(t, dir, "relay.test")
	// A key of its own (MakeCert's certificates share one key).
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	keyB := filepath.Join(dir, "other.key")
	if err := os.WriteFile(keyB, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, cert, key, want string }{
		{"other key", certA, keyB, "do not belong together"},
		{"swapped", keyA, certA, "swap the two paths"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "ptrelay.toml")
			if err := os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "relay.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
tls_cert = %q
tls_key = %q
`, filepath.Join(dir, "data"), c.cert, c.key)), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "check"}, {"serve"}} {
				cmd := exec.Command(bin, append(args, "-config", conf)...)
				cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY=", "NOTIFY_SOCKET=")
				out, err := cmd.CombinedOutput()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "smtp.tls_cert: ") || !strings.Contains(string(out), c.want) {
					t.Errorf("%v: %v, want exit 1 with %q:\n%s", args, err, c.want, out)
				}
			}
		})
	}
}
