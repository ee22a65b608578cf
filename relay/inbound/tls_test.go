package inbound

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// Windows 2003 (RSA key exchange, AES-CBC or 3DES) and Windows 2008 (ECDHE-RSA CBC) TLS 1.0 clients.
var legacyClients = []struct {
	name    string
	suite   uint16
	openssl string
}{
	{"win2003-kb948963", tls.TLS_RSA_WITH_AES_128_CBC_SHA, "AES128-SHA"},
	{"win2003", tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, "DES-CBC3-SHA"},
	{"win2008", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "ECDHE-RSA-AES128-SHA"},
}

// legacyHandshake runs STARTTLS as a TLS 1.0 client offering only suite; it returns the handshake error.
func legacyHandshake(t *testing.T, addr string, suite uint16) (*dialog, error) {
	d := dial(t, addr)
	d.ehlo("SBS2003.contoso.local")
	d.send("STARTTLS")
	d.expect(220)
	tc := tls.Client(d.c, &tls.Config{
		InsecureSkipVerify: true, // a self-signed certificate, as Exchange 2003 takes it
		MinVersion:         tls.VersionTLS10,
		MaxVersion:         tls.VersionTLS10,
		CipherSuites:       []uint16{suite},
	})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	err := tc.Handshake()
	_ = tc.SetDeadline(time.Time{})
	d.c = tc
	d.r = newReader(tc)
	return d, err
}

func TestTLS_LegacyRefusedByDefault(t *testing.T) {
	logs := &testkit.Buffer{}
	cfg := testConfig(t)
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, _ = writeTestCert(t, t.TempDir())
	ts := startServer(t, cfg, serverOpt{log: slog.New(slog.NewTextHandler(logs, nil))})
	for _, c := range legacyClients {
		t.Run(c.name, func(t *testing.T) {
			d, err := legacyHandshake(t, ts.addr, c.suite)
			if err == nil {
				t.Fatalf("TLS 1.0 with %s accepted without tls_legacy", tls.CipherSuiteName(c.suite))
			}
			d.c.Close()
		})
	}
	testkit.Eventually(5*time.Second, func() bool {
		return strings.Count(logs.String(), "STARTTLS handshake failed") >= len(legacyClients)
	})
	out := logs.String()
	if n := strings.Count(out, "STARTTLS handshake failed"); n != len(legacyClients) {
		t.Fatalf("%d handshake failures logged, want %d:\n%s", n, len(legacyClients), out)
	}
	if !strings.Contains(out, "client=127.0.0.1:") || !strings.Contains(out, "TLS1.0") || !strings.Contains(out, "tls_legacy") {
		t.Errorf("the failure log must name the client, its TLS version and the setting to change:\n%s", out)
	}
}

func TestTLS_LegacyAccepted(t *testing.T) {
	logs := &testkit.Buffer{}
	cfg := testConfig(t)
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, _ = writeTestCert(t, t.TempDir())
	cfg.SMTP.TLSLegacy = true
	ts := startServer(t, cfg, serverOpt{log: slog.New(slog.NewTextHandler(logs, nil)), listener: lanClient})
	if !strings.Contains(logs.String(), "tls_legacy = true") {
		t.Errorf("no start-up warning for tls_legacy:\n%s", logs.String())
	}
	for _, c := range legacyClients {
		t.Run(c.name, func(t *testing.T) {
			d, err := legacyHandshake(t, ts.addr, c.suite)
			if err != nil {
				t.Fatalf("TLS 1.0 with %s refused with tls_legacy: %v", tls.CipherSuiteName(c.suite), err)
			}
			d.ehlo("SBS2003.contoso.local")
			d.send("AUTH LOGIN")
			d.expect(334)
			d.send(b64(testUser))
			d.expect(334)
			d.send(b64(testPass))
			d.expect(235)
			code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: legacy\r\n\r\nx\r\n")
			if code != 250 {
				t.Fatalf("relay over TLS 1.0: %q", text)
			}
		})
	}
	ts.hooks.mu.Lock()
	tlsSeen := append([]string(nil), ts.hooks.tls...)
	ts.hooks.mu.Unlock()
	if len(tlsSeen) != len(legacyClients) || !strings.HasPrefix(tlsSeen[0], "192.168.1.20 TLS1.0 ") {
		t.Errorf("OnTLS saw %q", tlsSeen)
	}
	out := logs.String()
	if strings.Contains(out, "handshake failed") {
		t.Errorf("successful handshakes logged as failures:\n%s", out)
	}
	for _, c := range legacyClients {
		if !strings.Contains(out, "version=TLS1.0 cipher="+tls.CipherSuiteName(c.suite)) {
			t.Errorf("no log line names TLS1.0 with %s", tls.CipherSuiteName(c.suite))
		}
	}
	if ms := ts.messages(); len(ms) != len(legacyClients) {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

// Real OpenSSL clients (what Windows 2003/2008 look like on the wire), at security level 0 so OpenSSL 3 still
// speaks TLS 1.0 and SHA-1 suites.
func TestTLS_LegacyOpenSSL(t *testing.T) {
	openssl := relaytest.Path(t, "openssl")
	for _, legacy := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, _ = writeTestCert(t, t.TempDir())
		cfg.SMTP.TLSLegacy = legacy
		ts := startServer(t, cfg, serverOpt{})
		for _, c := range legacyClients {
			if c.openssl == "DES-CBC3-SHA" {
				continue // OpenSSL 3 builds commonly leave 3DES out even at level 0; covered by the Go client
			}
			ok, out := opensslHandshake(t, openssl, ts.addr, c.openssl)
			if ok != legacy {
				t.Errorf("tls_legacy=%v, openssl -tls1 -cipher %s: handshake ok=%v\n%s", legacy, c.openssl, ok, out)
			}
		}
	}
}

func opensslHandshake(t *testing.T, openssl, addr, cipher string) (bool, string) {
	t.Helper()
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-starttls", "smtp", "-tls1",
		"-cipher", cipher+":@SECLEVEL=0", "-brief")
	cmd.Stdin = strings.NewReader("QUIT\r\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		o := out.String()
		return err == nil && strings.Contains(o, "Protocol version: TLSv1\n") && strings.Contains(o, "Ciphersuite: "+cipher+"\n"), o
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("openssl s_client hung:\n%s", out.String())
	}
	return false, ""
}

// tls_cert = "auto": an RSA pair made at first start in data_dir and reused afterwards.
func TestTLS_AutoCertificate(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.TLSCert = "auto"
	ts := startServer(t, cfg, serverOpt{listener: lanClient})
	certPath := filepath.Join(cfg.DataDir, autoCertFile)
	first, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatalf("auto certificate not kept in data_dir: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, autoKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("auto key: %v %v", fi, err)
	}
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.startTLS(&tls.Config{InsecureSkipVerify: true})
	st := d.c.(*tls.Conn).ConnectionState()
	if _, ok := st.PeerCertificates[0].PublicKey.(interface{ Size() int }); !ok {
		t.Fatalf("auto certificate key is %T, want RSA", st.PeerCertificates[0].PublicKey)
	}
	if st.PeerCertificates[0].Subject.CommonName != "relay.test" {
		t.Errorf("auto certificate for %q", st.PeerCertificates[0].Subject.CommonName)
	}
	d.ehlo("x")
	// A second start (a reload builds the TLS config again) reuses the pair.
	if err := ts.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(certPath)
	if !bytes.Equal(first, again) {
		t.Fatal("auto certificate was regenerated")
	}
	// Go clients that verify (as outbound code does) refuse TLS 1.0 by default: the legacy profile is inbound only.
	if fmt.Sprint(tls.VersionName(tls.VersionTLS10)) != "TLS 1.0" {
		t.Fatal("unexpected Go TLS naming")
	}
}

// A TLS 1.2 client that offers only RSA key exchange (Windows 2008 R2 without ECDHE updates) is refused by
// default with a hint naming tls_legacy, and accepted with it.
func TestTLS_RSAKeyExchangeOnly(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		logs := &testkit.Buffer{}
		cfg := testConfig(t)
		cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, _ = writeTestCert(t, t.TempDir())
		cfg.SMTP.TLSLegacy = legacy
		ts := startServer(t, cfg, serverOpt{log: slog.New(slog.NewTextHandler(logs, nil))})
		d := dial(t, ts.addr)
		d.ehlo("x")
		d.send("STARTTLS")
		d.expect(220)
		tc := tls.Client(d.c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err := tc.Handshake()
		tc.Close()
		if (err == nil) != legacy {
			t.Fatalf("tls_legacy=%v: handshake error %v", legacy, err)
		}
		if !legacy {
			testkit.Eventually(5*time.Second, func() bool { return strings.Contains(logs.String(), "handshake failed") })
			if out := logs.String(); !strings.Contains(out, "no cipher suite in common") || !strings.Contains(out, "TLS_RSA_WITH_AES_128_GCM_SHA256") || !strings.Contains(out, "tls_legacy") {
				t.Errorf("failure log lacks the reason:\n%s", out)
			}
		}
	}
}

func TestTLS_CertWithoutKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.TLSCert = "/nonexistent/cert.pem"
	if _, err := newServer(cfg, nil, testLogger(t), Hooks{}); err == nil || !strings.Contains(err.Error(), "tls_key") {
		t.Fatalf("tls_cert without tls_key: %v", err)
	}
	cfg.SMTP.TLSKey = "/nonexistent/key.pem"
	if _, err := newServer(cfg, nil, testLogger(t), Hooks{}); err == nil || !strings.Contains(err.Error(), "smtp.tls_cert") {
		t.Fatalf("missing files: %v", err)
	}
}

// The ".\r" bare CR that go-smtp's DATA reader hides is caught inside STARTTLS too (the tap sits above TLS).
func TestTLS_DotCRCaughtInsideTLS(t *testing.T) {
	ts, client := tlsServer(t, func(c *config.Config) { c.SMTP.AllowedNetworks = []string{"192.168.1.0/24"} })
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.startTLS(client)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw(smuggled("\r\n.\r") + ".\r\n")
	d.expect(550)
	code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: clean\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("clean message after the refusal: %q", text)
	}
	if ms := ts.messages(); len(ms) != 1 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}
