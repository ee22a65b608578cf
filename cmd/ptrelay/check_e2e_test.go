package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/selfcheck"
)

// checkZone is a small Internet on a real unbound: example.test with its MX and SPF, a relay whose PTR,
// forward name and hostname agree (192.0.2.10), an address with no PTR (192.0.2.11), and a DNSBL zone that
// answers its RFC 5782 test point and lists nothing else.
var checkZone = []string{
	"example.test. MX 10 mx.example.test.",
	"mx.example.test. A 192.0.2.20",
	`example.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
	"relay.example.test. A 192.0.2.10",
	"10.2.0.192.in-addr.arpa. PTR relay.example.test.",
	"2.0.0.127.bl.test. A 127.0.0.2",
}

// runCheckCmd runs the built `ptrelay check -json` and returns its exit code and decoded document.
func runCheckCmd(t *testing.T, bin, conf string) (int, selfcheck.Result, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "ptrelay.toml")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "-json", "-domain", "example.test", "-config", file)
	cmd.Dir = dir
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var res selfcheck.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("check -json printed no JSON (%v):\n%s", err, out)
	}
	return code, res, string(out)
}

func checkConfig(dns, egressIP, probe string) string {
	return fmt.Sprintf(`hostname = "relay.example.test"
[dns]
resolvers = [%q]
timeout = "2s"
[egress]
ip = %q
dnsbl = ["bl.test"]
port25_probe = %q
`, dns, egressIP, probe)
}

func statusOf(res selfcheck.Result, id string) string {
	for _, rep := range res.Reports {
		for _, c := range rep.Checks {
			if c.ID == id {
				return string(c.Status)
			}
		}
	}
	return "missing"
}

func TestCheck_ExitCodesAndJSON(t *testing.T) {
	relaytest.Require(t, "unbound")
	bin := relaytest.BuildBinary(t)
	dns := dnstest.StartUnbound(t, checkZone...)
	// The port-25 probe target: anything that accepts TCP on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	probe := ln.Addr().String()

	t.Run("fit for direct delivery", func(t *testing.T) {
		code, res, out := runCheckCmd(t, bin, checkConfig(dns, "192.0.2.10", probe))
		if code != 0 || res.Verdict != "direct-ok" || res.Exit != 0 {
			t.Fatalf("exit %d, verdict %s; want 0 and direct-ok\n%s", code, res.Verdict, out)
		}
		for id, want := range map[string]string{"egress": "pass", "ptr": "pass", "fcrdns": "pass", "hostname": "pass",
			"generic": "pass", "dnsbl:bl.test": "pass", "port25": "pass", "spf:example.test": "pass"} {
			if got := statusOf(res, id); got != want {
				t.Errorf("check %s: %s, want %s\n%s", id, got, want, out)
			}
		}
		if len(res.MX) != 1 || res.MX[0].Status != "pass" || !strings.Contains(res.MX[0].Detail, "mx.example.test") || !strings.Contains(res.MX[0].Detail, "192.0.2.20") {
			t.Errorf("MX line: %+v", res.MX)
		}
	})
	t.Run("no PTR needs a smart host", func(t *testing.T) {
		code, res, out := runCheckCmd(t, bin, checkConfig(dns, "192.0.2.11", probe))
		if code != 1 || res.Verdict != "smarthost" {
			t.Fatalf("exit %d, verdict %s; want 1 and smarthost\n%s", code, res.Verdict, out)
		}
		if got := statusOf(res, "ptr"); got != "permerror" {
			t.Errorf("ptr check: %s, want permerror", got)
		}
		if got := statusOf(res, "spf:example.test"); got != "fail" {
			t.Errorf("SPF of example.test for 192.0.2.11: %s, want fail", got)
		}
	})
	t.Run("DNS unreachable cannot tell", func(t *testing.T) {
		dead := fmt.Sprintf("127.0.0.1:%d", relaytest.FreePort(t, "127.0.0.1"))
		code, res, out := runCheckCmd(t, bin, checkConfig(dead, "192.0.2.10", probe))
		if code != 2 || res.Verdict != "unknown" {
			t.Fatalf("exit %d, verdict %s; want 2 and unknown\n%s", code, res.Verdict, out)
		}
	})
	t.Run("text output names the fix", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "ptrelay.toml")
		if err := os.WriteFile(file, []byte(checkConfig(dns, "192.0.2.11", probe)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "check", "-domain", "example.test", "-config", file).Output()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v", err)
		}
		for _, want := range []string{"fail", "fix:", "PTR", "Verdict: smarthost"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("text output lacks %q:\n%s", want, out)
			}
		}
	})
}
