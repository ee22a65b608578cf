package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
[smarthost]
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

	if out, code := run(noCreds, "config", "check"); code != 0 || !strings.Contains(out, "warning") || !strings.Contains(out, "smarthost.username") {
		t.Errorf("config check without the credential: exit %d, want 0 with a warning:\n%s", code, out)
	}
	if out, code := run(noCreds, "serve"); code != 1 || !strings.Contains(out, "smarthost.username: is set but there is no password") {
		t.Errorf("serve without the credential: exit %d, want 1 naming the key:\n%s", code, out)
	}

	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "smarthost"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := exec.Command(bin, "serve", "-config", conf)
	serve.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds, "NOTIFY_SOCKET=")
	serve.Dir = dir
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	relaytest.WaitTCP(t, addr, 30*time.Second)

	// The admin's shell, without the credential, reaches the running daemon.
	for _, args := range [][]string{{"queue", "list"}, {"status"}} {
		if out, code := run(noCreds, args...); code != 0 {
			t.Errorf("%v in a shell without the credential: exit %d:\n%s", args, code, out)
		}
	}
}
