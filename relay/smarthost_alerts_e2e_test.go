package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// refusingHost is an SMTP server that offers AUTH PLAIN and refuses every password with 535 5.7.8.
func refusingHost(t *testing.T) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return refusingSession{}, nil }))
	srv.Domain, srv.AllowInsecureAuth = "smtp.refusing.test", true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

type refusingSession struct{}

func (refusingSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (refusingSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, _, _ string) error { return smtp.ErrAuthFailed }), nil
}
func (refusingSession) Mail(string, *smtp.MailOptions) error { return errors.New("not logged in") }
func (refusingSession) Rcpt(string, *smtp.RcptOptions) error { return errors.New("not logged in") }
func (refusingSession) Data(io.Reader) error                 { return errors.New("not logged in") }
func (refusingSession) Reset()                               {}
func (refusingSession) Logout() error                        { return nil }

// The smart-host conditions delivery reports, in the running daemon: a host that refuses the login raises
// smarthost.auth at once and, after smarthost_failover_after failures, smarthost.down; an OAuth client secret
// that expires within 30 days raises secret.expiring; status shows the host down with its last error; a reload
// that removes the hosts clears their conditions.
func TestAlertsE2E_SmarthostConditions(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	pass := filepath.Join(e.dir, "pw.pass")
	secret := filepath.Join(e.dir, "m365.secret")
	for _, f := range []string{pass, secret} {
		if err := os.WriteFile(f, []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	expires := time.Now().AddDate(0, 0, 10).UTC().Format(time.DateOnly)
	extra := fmt.Sprintf(`
[[smarthosts]]
name = "pw"
address = %q
tls = "none"
username = "relay"
password_file = %q

[[smarthosts]]
name = "m365"
address = "smtp.office365.com:587"
auth = "xoauth2"
username = "relay@contoso.test"
[smarthosts.oauth2]
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret_file = %q
client_secret_expires = %q

[[routing.rules]]
domains = ["pinned.test"]
via = "smarthost:pw"
`, refusingHost(t), pass, secret, expires)
	cfg := e.config(t, "", extra)
	r, addr := e.start(t, cfg)

	testkit.WaitFor(t, 10*time.Second, "secret.expiring for m365", func() bool { _, ok := e.alert(t, "secret.expiring/m365"); return ok })
	for i := range 3 {
		send(t, addr, fmt.Sprintf("x%d@pinned.test", i), fmt.Sprintf("pinned%d", i))
	}
	testkit.WaitFor(t, 30*time.Second, "smarthost.auth and smarthost.down for pw", func() bool {
		_, auth := e.alert(t, "smarthost.auth/pw")
		_, down := e.alert(t, "smarthost.down/pw")
		return auth && down
	})
	a, _ := e.alert(t, "smarthost.auth/pw")
	if !strings.Contains(a.Summary, "535") || !strings.Contains(a.Summary, "pw") {
		t.Errorf("smarthost.auth summary %q", a.Summary)
	}
	found := false
	for _, h := range e.status(t).Smarthosts {
		if h.Name == "pw" {
			found = true
			if h.State != "down" || !strings.Contains(h.LastError, "535") {
				t.Errorf("status of pw: %+v, want down with the 535", h)
			}
		}
	}
	if !found {
		t.Errorf("status lists no smart host pw: %+v", e.status(t).Smarthosts)
	}

	// The hosts go away: so do their conditions.
	cfg2 := e.config(t, "", "")
	if err := r.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the removed hosts' conditions cleared", func() bool {
		for _, k := range []string{"smarthost.auth/pw", "smarthost.down/pw", "secret.expiring/m365"} {
			if _, ok := e.alert(t, k); ok {
				return false
			}
		}
		return true
	})
}
