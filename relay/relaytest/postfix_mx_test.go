package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test CA's certificates verify where they should and fail where they should: a certificate for another
// name, and an expired one.
func TestCA_IssuesValidWrongNameAndExpired(t *testing.T) {
	dir := t.TempDir()
	ca := NewCA(t, dir)
	valid, validKey := ca.Issue(t, "valid", CertOptions{Hosts: []string{"mx.valid.test", "127.0.0.61"}})
	verifyCert(t, valid, validKey, ca.Pool, "mx.valid.test")
	for _, c := range []struct {
		name string
		opt  CertOptions
		want string
	}{
		{"wrongname", CertOptions{Hosts: []string{"mx.other.test"}}, "not mx.wrongname.test"},
		{"expired", CertOptions{Hosts: []string{"mx.wrongname.test"}, NotBefore: time.Now().Add(-48 * time.Hour),
			NotAfter: time.Now().Add(-24 * time.Hour)}, "expired"},
	} {
		certFile, keyFile := ca.Issue(t, c.name, c.opt)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "mx.wrongname.test"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: verify error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// A Postfix MX with one host offering STARTTLS with a CA-signed certificate and one offering no STARTTLS:
// swaks delivers through each, verifying the certificate on the first, and the MX relays both to the sink
// with the TLS of each session in its Received header. A domain it is not MX for is refused.
func TestPostfixMX_STARTTLSPerHost(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "postfix")
	RequireRoot(t)
	ca := NewCA(t, t.TempDir())
	cert, key := ca.Issue(t, "mx1", CertOptions{Hosts: []string{"mx1.dest.test"}})
	sink := StartSink(t, SinkOptions{Addr: "127.0.0.3:0"})
	mx := StartPostfixMX(t, PostfixMXOptions{
		Hosts:   []MXHost{{IP: "127.0.0.61", CertFile: cert, KeyFile: key}, {IP: "127.0.0.62"}},
		Domains: []string{"dest.test"}, RelayTo: sink.Addr(), Hostname: "mx1.dest.test",
	})
	addrs := mx.MXAddrs()
	if len(addrs) != 2 || addrs[0] != net.JoinHostPort("127.0.0.61", strconv.Itoa(mx.Port())) ||
		addrs[1] != net.JoinHostPort("127.0.0.62", strconv.Itoa(mx.Port())) {
		t.Fatalf("MX listeners %v, port %d", addrs, mx.Port())
	}
	out, err := Swaks(t, "--server", addrs[0], "--tls", "--tls-verify", "--tls-ca-path", ca.CertFile,
		"--tls-sni", "mx1.dest.test", "--from", "a@sender.test", "--to", "x@dest.test", "--header", "Subject: tls")
	if err != nil {
		t.Fatalf("swaks with STARTTLS: %v\n%s\n%s", err, out, mx.Log())
	}
	out, err = Swaks(t, "--server", addrs[1], "--from", "a@sender.test", "--to", "y@dest.test", "--header", "Subject: plain")
	if err != nil || strings.Contains(out, "STARTTLS") {
		t.Fatalf("swaks in clear (no STARTTLS may be offered): %v\n%s", err, out)
	}
	out, err = Swaks(t, "--server", addrs[1], "--from", "a@sender.test", "--to", "z@elsewhere.test")
	if err == nil || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("a domain the MX does not serve: want 554 5.7.1 relay access denied, err %v\n%s", err, out)
	}
	for _, m := range sink.WaitMessages(t, 2, 30*time.Second) {
		received := m.Header().Get("Received")
		switch m.Header().Get("Subject") {
		case "tls":
			if !strings.Contains(received, "with ESMTPS") || !strings.Contains(received, "using TLS") {
				t.Errorf("STARTTLS session not recorded as TLS: %s", received)
			}
		case "plain":
			if !strings.Contains(received, "with ESMTP ") || strings.Contains(received, "using TLS") {
				t.Errorf("plaintext session recorded as TLS: %s", received)
			}
		}
	}
}
