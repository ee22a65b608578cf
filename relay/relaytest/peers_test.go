package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"strconv"
	"testing"
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
	if os.Getenv(E2EEnv) != "" {
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
