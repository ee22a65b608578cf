package inbound

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
)

// verifyingClient returns a TLS client configuration that trusts only the certificate in certPath (as Exchange
// does once the certificate is imported as a trusted root) and verifies the server by name.
func verifyingClient(t *testing.T, certPath, name string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", certPath)
	}
	return &tls.Config{RootCAs: pool, ServerName: name}
}

// startTLSAs runs STARTTLS on a new session and returns the handshake's error.
func startTLSAs(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	d := dial(t, addr)
	d.ehlo("EX2019.contoso.local")
	d.send("STARTTLS")
	d.expect(220)
	tc := tls.Client(d.c, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	err := tc.Handshake()
	tc.Close()
	return err
}

// The "auto" certificate names hostname, every smtp.tls_names entry and the listen addresses, and a client that
// verifies the certificate accepts it by each of them, and refuses it by any other name or address.
func TestAutoCert_VerifiesByEveryName(t *testing.T) {
	cfg := testConfig(t)
	cfg.Hostname = "relay.example.com"
	cfg.SMTP.TLSCert = "auto"
	cfg.SMTP.TLSNames = []string{"relay.example.lan", "Relay-Alias", "192.168.1.20", "fd00::20"}
	cfg.SMTP.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	ts := startServer(t, cfg, serverOpt{})
	certPath := AutoCertPath(cfg.DataDir)

	want := []string{"relay-alias", "relay.example.com", "relay.example.lan", "127.0.0.1", "192.168.1.20", "::1", "fd00::20"}
	info := ts.srv.Certificate()
	if info == nil || !info.Auto || info.File != certPath || !slices.Equal(info.Names, want) {
		t.Fatalf("Certificate() = %+v, want auto, %s, names %v", info, certPath, want)
	}
	if left := time.Until(info.NotAfter); left < 9*365*24*time.Hour {
		t.Errorf("the certificate expires in %v", left)
	}
	for _, name := range want {
		if err := startTLSAs(t, ts.addr, verifyingClient(t, certPath, name)); err != nil {
			t.Errorf("verifying by %q: %v", name, err)
		}
	}
	for _, name := range []string{"other.example.com", "example.com", "relay.example.lan.evil", "192.168.1.21", "::2"} {
		err := startTLSAs(t, ts.addr, verifyingClient(t, certPath, name))
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Errorf("verifying by %q: got %v, want a host name mismatch", name, err)
		}
	}
}

// A listener on every address stands for the machine's addresses (IPv4 only for 0.0.0.0), without link-local
// ones; a host name in listen is a DNS name of the certificate.
func TestAutoCert_WildcardListen(t *testing.T) {
	ifaces := func() ([]net.Addr, error) {
		var out []net.Addr
		for _, s := range []string{"127.0.0.1/8", "192.168.1.20/24", "169.254.7.7/16", "::1/128", "fe80::1/64", "2001:db8::5/64"} {
			ip, n, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, &net.IPNet{IP: ip, Mask: n.Mask})
		}
		return out, nil
	}
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	cases := []struct {
		listen []string
		want   string
	}{
		{[]string{":25"}, "relay.test, 127.0.0.1, 192.168.1.20, ::1, 2001:db8::5"},
		{[]string{"[::]:25"}, "relay.test, 127.0.0.1, 192.168.1.20, ::1, 2001:db8::5"},
		{[]string{"0.0.0.0:25"}, "relay.test, 127.0.0.1, 192.168.1.20"},
		{[]string{"192.168.1.20:25", "192.168.1.20:587", "localhost:2525"}, "localhost, relay.test, 192.168.1.20"},
	}
	for _, c := range cases {
		cfg := &config.Config{Hostname: "relay.test", SMTP: config.SMTP{Listen: c.listen}}
		if got := wantedNames(cfg, ifaces, log).String(); got != c.want {
			t.Errorf("listen %v: names %q, want %q", c.listen, got, c.want)
		}
	}
	var logs bytes.Buffer
	cfg := &config.Config{Hostname: "relay.test", SMTP: config.SMTP{Listen: []string{":25"}}}
	failing := func() ([]net.Addr, error) { return nil, errors.New("netlink refused") }
	if got := wantedNames(cfg, failing, slog.New(slog.NewTextHandler(&logs, nil))).String(); got != "relay.test" {
		t.Errorf("names without interface addresses: %q", got)
	}
	if !strings.Contains(logs.String(), "smtp.tls_names") {
		t.Errorf("no warning naming smtp.tls_names when addresses cannot be listed:\n%s", logs.String())
	}
}

// The certificate is kept while its names hold, made again (same key) when they change, near its end, or when
// it does not match the key; the change is a warning, since servers that trust the old one must be told.
func TestAutoCert_Regenerated(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Now()
	names := func(s ...string) certNames {
		cfg := &config.Config{Hostname: s[0], SMTP: config.SMTP{TLSNames: s[1:]}}
		return wantedNames(cfg, nil, log)
	}
	certPath := AutoCertPath(dir)
	read := func() []byte {
		b, err := os.ReadFile(certPath)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	first, err := autoCertificate(dir, names("relay.test", "relay.example.lan"), now, log)
	if err != nil {
		t.Fatal(err)
	}
	firstPEM := read()
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the first certificate is not news:\n%s", logs.String())
	}

	// Same names, in another order and case: kept.
	if _, err := autoCertificate(dir, names("relay.test", "RELAY.example.lan", "relay.test"), now, log); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(), firstPEM) {
		t.Fatal("the certificate was made again although its names did not change")
	}

	// A name more: a new certificate for the same key, and a warning.
	logs.Reset()
	second, err := autoCertificate(dir, names("relay.test", "relay.example.lan", "192.168.1.20"), now, log)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(read(), firstPEM) {
		t.Fatal("the certificate was kept although a name was added")
	}
	if got := namesOf(second.Leaf).String(); got != "relay.example.lan, relay.test, 192.168.1.20" {
		t.Errorf("new certificate names %q", got)
	}
	if !second.Leaf.PublicKey.(*rsa.PublicKey).Equal(first.Leaf.PublicKey) {
		t.Error("the key changed; it must be kept")
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "must be given the new one") {
		t.Errorf("no warning for the changed certificate:\n%s", out)
	}

	// A name fewer, and a new hostname (the subject's common name): new certificates too.
	third, err := autoCertificate(dir, names("relay.test"), now, log)
	if err != nil || namesOf(third.Leaf).String() != "relay.test" {
		t.Fatalf("after removing names: %v %v", err, third.Leaf.DNSNames)
	}
	renamed, err := autoCertificate(dir, names("mail.example.com", "relay.test"), now, log)
	if err != nil || renamed.Leaf.Subject.CommonName != "mail.example.com" {
		t.Fatalf("after a new hostname: %v, common name %q", err, renamed.Leaf.Subject.CommonName)
	}

	// Within 30 days of its end: made again.
	before := read()
	late := renamed.Leaf.NotAfter.Add(-10 * 24 * time.Hour)
	renewed, err := autoCertificate(dir, names("mail.example.com", "relay.test"), late, log)
	if err != nil || bytes.Equal(read(), before) || !renewed.Leaf.NotAfter.After(renamed.Leaf.NotAfter) {
		t.Fatalf("not renewed near its end: %v", err)
	}

	// A certificate that does not belong to the key (a copied file): replaced.
	otherCert, _, _ := writeTestCert(t, t.TempDir())
	foreign, err := os.ReadFile(otherCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := autoCertificate(dir, names("mail.example.com"), now, log); err != nil {
		t.Fatalf("a certificate that does not match the key should be replaced: %v", err)
	}
	if bytes.Equal(read(), foreign) {
		t.Fatal("the foreign certificate was kept")
	}

	// A damaged key is not replaced silently: the certificate others trust depends on it.
	if err := os.WriteFile(filepath.Join(dir, autoKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := autoCertificate(dir, names("mail.example.com"), now, log); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("damaged key: %v", err)
	}
}

// A reload with a new smtp.tls_names entry gives new sessions a certificate that carries it.
func TestAutoCert_ReloadAddsName(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.TLSCert = "auto"
	cfg.SMTP.Listen = []string{"127.0.0.1:0"}
	ts := startServer(t, cfg, serverOpt{})
	certPath := AutoCertPath(cfg.DataDir)
	if err := startTLSAs(t, ts.addr, verifyingClient(t, certPath, "relay.example.lan")); err == nil {
		t.Fatal("verified by a name the certificate does not carry yet")
	}

	next := *cfg
	next.SMTP.TLSNames = []string{"relay.example.lan"}
	if err := ts.srv.Reload(&next); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay.example.lan", "relay.test", "127.0.0.1"} {
		if err := startTLSAs(t, ts.addr, verifyingClient(t, certPath, name)); err != nil {
			t.Errorf("after the reload, verifying by %q: %v", name, err)
		}
	}
	if info := ts.srv.Certificate(); info == nil || !slices.Contains(info.Names, "relay.example.lan") {
		t.Errorf("Certificate() after the reload: %+v", info)
	}
}
