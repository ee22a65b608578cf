package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// TestStatus_DaemonElsewhereAndPendingRestart: `status` with a configuration whose admin.socket is not the one
// the daemon listens on does not say "not running" while the daemon holds the queue; and a reload that changes
// a restart-only key is listed by `status` until the restart.
func TestStatus_DaemonElsewhereAndPendingRestart(t *testing.T) {
	listen := loopbackAddr(t, "127.0.0.1")
	conf := opsConfig(listen, "127.0.0.1:9", "5m", "\n[admin]\nsocket = \"daemon.sock\"\n")
	d := startDaemon(t, relaytest.DaemonOptions{Config: conf})

	other := filepath.Join(d.Dir(), "other.toml")
	if err := os.WriteFile(other, []byte(strings.Replace(conf, "daemon.sock", "other.sock", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relaytest.BuildBinary(t), "status", "-config", other)
	cmd.Dir = d.Dir()
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "not running") || !strings.Contains(string(out), "ptrelay is running (it holds the queue database") ||
		!strings.Contains(string(out), "admin.socket") {
		t.Errorf("status on another socket: %v\n%s", err, out)
	}

	// dns.timeout needs a restart (the resolver is shared by delivery and the egress checker).
	if err := os.WriteFile(d.ConfigFile(), []byte(strings.Replace(conf, `timeout = "1s"`, `timeout = "2s"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ { // and still after a second reload
		d.Signal(syscall.SIGHUP)
		testkit.WaitForExplained(t, 15*time.Second, d.Stderr, func() bool { return strings.Count(d.Stderr(), `msg="configuration reloaded"`) == n })
		if out := mustPtrelay(t, d, "status"); !strings.Contains(out, "Pending:       dns.timeout changed by a reload: restart ptrelay") {
			t.Errorf("status after reload %d:\n%s", n, out)
		}
	}
}
