package packaging_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

const (
	unitFile    = "ptrelay.service"
	installedAt = "/usr/local/bin/ptrelay"
	// maxExposure is the bound on systemd-analyze security's overall exposure (0 safest, 10 unsafe). The
	// relay needs the network, port 25 and an ambient capability, which cost about 1.5 of it.
	maxExposure = 2.0
)

// stage copies the unit into a temporary directory with ExecStart pointing at an executable that exists there,
// since verify checks that the binary is present.
func stage(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ptrelay")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "ExecStart="+installedAt+" serve") {
		t.Fatalf("the unit does not start %s serve", installedAt)
	}
	unit := filepath.Join(dir, unitFile)
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(raw), installedAt, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return unit
}

func analyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, relaytest.Path(t, "systemd-analyze"), args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUnit_Verify(t *testing.T) {
	relaytest.Require(t, "systemd-analyze")
	unit := stage(t)
	out, err := analyze(t, "verify", unit)
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 after ignoring a line it cannot parse; every complaint names the file and line.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, unitFile) {
			t.Errorf("systemd-analyze verify complains: %s", line)
		}
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestUnit_SecurityExposure(t *testing.T) {
	relaytest.Require(t, "systemd-analyze")
	out, err := analyze(t, "security", "--help")
	if err != nil {
		t.Fatalf("systemd-analyze security --help: %v\n%s", err, out)
	}
	if !strings.Contains(out, "--offline") {
		testkit.Missing(t, "test needs systemd-analyze security --offline (systemd 250 or later)")
	}
	unit := stage(t)
	out, err = analyze(t, "security", "--offline=true", unit)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in the output:\n%s", out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security --offline: exposure %.1f (bound %.1f); remaining findings:", score, maxExposure)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "✗") {
			t.Log("  " + strings.Join(strings.Fields(sc.Text()), " "))
		}
	}
	if score >= maxExposure {
		t.Errorf("exposure %.1f, want below %.1f:\n%s", score, maxExposure, out)
	}
}

// TestUnit_Contract pins the settings the design and the daemon rely on, so an edit that drops one is caught
// even where systemd-analyze is not installed.
func TestUnit_Contract(t *testing.T) {
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("not a setting: %q", line)
			continue
		}
		have[k] = append(have[k], v)
	}
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "30s",
		"ExecStart":               installedAt + " serve -config /etc/ptrelay/ptrelay.toml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"DynamicUser":             "yes",
		"StateDirectory":          "ptrelay",
		"RuntimeDirectory":        "ptrelay",
		"ConfigurationDirectory":  "ptrelay",
		"LoadCredential":          "smarthost:/etc/ptrelay/smarthost.pass",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures": "native",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		if !contains(have[k], v) {
			t.Errorf("%s=%s missing (have %q)", k, v, have[k])
		}
	}
	if !contains(have["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter=@system-service missing (have %q)", have["SystemCallFilter"])
	}
	for _, k := range []string{"PrivateUsers", "IPAddressDeny", "PrivateNetwork"} {
		if _, ok := have[k]; ok {
			t.Errorf("%s= would cut the relay off from port 25 or the internet", k)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
