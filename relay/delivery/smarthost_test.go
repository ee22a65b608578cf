package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"ptrelay/relay/smtpclient"
)

// TestTLSFix: a failed TLS session with the smart host gets a fix that names the certificate's problem and the
// way out (the CA to install, the names it holds, tls_verify), or the port when the certificate is not it.
func TestTLSFix(t *testing.T) {
	sh := &Smarthost{Name: "isp", Host: "smtp.isp.test"}
	wrap := func(err error) error {
		return fmt.Errorf("starttls: %w", &tls.CertificateVerificationError{Err: err})
	}
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"unknown CA", wrap(x509.UnknownAuthorityError{}), []string{"CA", "update-ca-certificates", "tls_verify = false for smart host isp"}},
		{"wrong name", wrap(x509.HostnameError{Host: "smtp.isp.test", Certificate: &x509.Certificate{DNSNames: []string{"mail.isp.test", "isp.test"}}}),
			[]string{"does not name smtp.isp.test", "mail.isp.test, isp.test", "address of smart host isp", "tls_verify"}},
		{"expired", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), []string{"expired", "renew", "tls_verify"}},
		{"not TLS at all", fmt.Errorf("tls: first record does not look like a TLS handshake"), []string{"tls of smart host isp", "587", "465"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fix := tlsFix(c.err, sh)
			for _, w := range c.want {
				if !strings.Contains(fix, w) {
					t.Errorf("fix %q lacks %q", fix, w)
				}
			}
		})
	}
}

// TestAuthenticate_RefusedNamesThePasswordSource: a refused login is logged with the file the admin edits.
func TestAuthenticate_RefusedNamesThePasswordSource(t *testing.T) {
	peer := startFake(t, "127.0.0.1:0", func(f *fakePeer) { f.authUsers = map[string]string{"user": "right"} })
	var logs bytes.Buffer
	s := New(NewSettings(testConfig(25)), Env{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	cs, err := smtpclient.Dial(context.Background(), smtpclient.Spec{Host: "sh.test", Addr: peer.addr,
		Helo: "relay.test", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ss := &session{Session: cs}
	defer ss.Close(true)
	sh := &Smarthost{Name: "isp", Username: "user", TLS: smtpclient.TLSOff, PasswordSource: "/etc/ptrelay/smarthost.pass",
		Password: func() (string, error) { return "wrong", nil }}
	d, _ := s.authenticate(context.Background(), ss, sh, false)
	if d == nil || d.Outcome != Deferred || d.Status.Code != 535 {
		t.Fatalf("decision %+v, want a deferral with the 535", d)
	}
	if !strings.Contains(logs.String(), "the password in /etc/ptrelay/smarthost.pass") {
		t.Errorf("the log does not name the password file:\n%s", logs.String())
	}
}
