package delivery

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/oauth/oauthtest"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/smtpstatus"
)

// TestProbeSmarthost: `ptrelay check`'s line per smart host goes as far as a delivery would before MAIL (name,
// connection, TLS with the certificate checked, EHLO, login with a token fetched) and names what failed with the
// sentence that fixes it. No mail is sent.
func TestProbeSmarthost(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := relaytest.MakeCert(t, dir, "127.0.0.1", "smtp.oauth.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "right"})
	srv := oauthtest.StartSMTP(t, cert, func(user, tok string) bool { return user == mailbox && ts.Valid(tok) })
	_, port, _ := strings.Cut(srv.Addr, ":")
	dns := dnstest.New(t, "smtp.oauth.test. A 127.0.0.1")
	res := resolver(t, dns.Addr())
	secret := func(s string) string {
		p := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	host := func(addr, sec string, edit func(*config.Smarthost)) *Smarthost {
		c := config.NewSmarthost("m365", addr)
		c.Auth, c.Username = config.AuthXOAUTH2, mailbox
		c.OAuth2 = &config.OAuth2{Provider: config.ProviderGeneric, TokenURL: ts.URL, ClientID: "app", ClientSecretFile: secret(sec)}
		if edit != nil {
			edit(&c)
		}
		h := newSmarthost(&c)
		return &h
	}
	pw535 := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.authUsers = map[string]string{"u": "right"}
	})
	closed := "127.0.0.1:" + strconv.Itoa(relaytest.FreePort(t, "127.0.0.1"))
	for _, c := range []struct {
		name   string
		h      *Smarthost
		roots  bool
		status dnscheck.Status
		detail string
		fix    string
	}{
		{"XOAUTH2 login", host("smtp.oauth.test:"+port, "right", nil), true, dnscheck.StatusPass,
			"m365/smtp.oauth.test[127.0.0.1]:" + port + ": TLS, certificate verified; logged in as " + mailbox + "; no mail sent", ""},
		{"wrong client secret", host("smtp.oauth.test:"+port, "wrong", nil), true, dnscheck.StatusFail,
			"no OAuth2 token: token endpoint: invalid_client AADSTS7000215", "not its Secret ID"},
		{"untrusted certificate", host("smtp.oauth.test:"+port, "right", nil), false, dnscheck.StatusFail,
			"TLS with m365/smtp.oauth.test", "update-ca-certificates"},
		{"name not in DNS", host("nowhere.oauth.test:"+port, "right", nil), true, dnscheck.StatusFail,
			"cannot resolve nowhere.oauth.test", "dns.resolvers"},
		{"closed port", host(closed, "right", nil), true, dnscheck.StatusFail, "cannot connect", "port"},
		{"password refused", host(pw535.addr, "", func(c *config.Smarthost) {
			c.Auth, c.Username, c.OAuth2, c.TLS = config.AuthAuto, "u", nil, config.SmarthostNoTLS
			c.PasswordFile = secret("wrong")
		}), true, dnscheck.StatusFail, "refused the login as u: 535", "the smart host refused them"},
		{"no login", host(pw535.addr, "", func(c *config.Smarthost) {
			c.Auth, c.Username, c.OAuth2, c.TLS = config.AuthNone, "", nil, config.SmarthostNoTLS
		}), true, dnscheck.StatusPass, "without TLS; no login configured; no mail sent", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ProbeOptions{Resolver: res, Hostname: "relay.ptrelay.test", Timeout: 5 * time.Second}
			if c.roots {
				o.RootCAs = pool
			}
			got := ProbeSmarthost(context.Background(), c.h, o)
			if got.Status != c.status || !strings.Contains(got.Detail, c.detail) || !strings.Contains(got.Fix, c.fix) ||
				got.ID != "smarthost:"+c.h.Name {
				t.Errorf("check %+v\nwant %s with %q and fix %q", got, c.status, c.detail, c.fix)
			}
			if c.status == dnscheck.StatusPass && got.Fix != "" {
				t.Errorf("a passing check with a fix: %q", got.Fix)
			}
		})
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("the checks sent %v: no mail may be sent", cmds)
	}
	if n := len(pw535.messages()); n != 0 {
		t.Errorf("%d messages sent by the checks", n)
	}
}

// TestLoginFix: the sentences for providers' refusals of a login.
func TestLoginFix(t *testing.T) {
	pw := &Smarthost{Name: "isp", Username: "u", PasswordSource: "/etc/ptrelay/isp.pass"}
	for _, c := range []struct {
		reply string
		want  string
	}{
		{"535 5.7.8 Error: authentication failed", "/etc/ptrelay/isp.pass"},
		{"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "Set-CASMailbox -Identity u -SmtpClientAuthenticationDisabled $false"},
		{"550 5.7.30 Basic authentication is not supported for Client Submission.", `auth = "xoauth2"`},
	} {
		code, _ := strconv.Atoi(c.reply[:3])
		reply := smtpstatus.ParseReply(code, c.reply[4:])
		if got := LoginFix(pw, reply); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q lacks %q", c.reply, got, c.want)
		}
	}
}
