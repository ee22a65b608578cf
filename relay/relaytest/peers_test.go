package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"ptrelay/internal/testkit"
)

func verifyCert(t *testing.T, certFile, keyFile string, pool *x509.CertPool, host string) {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("key pair: %v", err)
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
		t.Errorf("certificate does not verify for %s: %v", host, err)
	}
}

func TestRequire_MissingSkipsOrFails(t *testing.T) {
	if testkit.E2E() {
		t.Skip("this test checks the skip path")
	}
	ran := false
	t.Run("missing", func(t *testing.T) {
		defer func() { ran = true }()
		Require(t, "relaytest-no-such-program")
		t.Error("Require returned for a missing program")
	})
	if !ran {
		t.Fatal("subtest did not run")
	}
}

func TestPath_FindsSbinPrograms(t *testing.T) {
	Require(t, "smtp-sink")
	if p := Path(t, "smtp-sink"); p == "" || p[0] != '/' {
		t.Fatalf("Path = %q", p)
	}
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// TestRequire_FailsUnderE2E runs a test that requires a missing program in a child test process with
// PTRELAY_E2E=1: the child must fail, naming the program and its package.
func TestRequire_FailsUnderE2E(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRequireHelper_Missing$", "-test.count=1")
	cmd.Env = append(os.Environ(), E2EEnv+"=1", "RELAYTEST_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child passed; want a failure:\n%s", out)
	}
	if !strings.Contains(string(out), "needs relaytest-no-such-program (apt-get install relaytest-no-such-program)") ||
		!strings.Contains(string(out), "--- FAIL: TestRequireHelper_Missing") {
		t.Errorf("child output:\n%s", out)
	}
}

func TestRequireHelper_Missing(t *testing.T) {
	if os.Getenv("RELAYTEST_HELPER") == "" {
		t.Skip("run by TestRequire_FailsUnderE2E")
	}
	Require(t, "relaytest-no-such-program")
}
