package delivery

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/oauth/oauthtest"
	"ptrelay/relay/relaytest"
)

const mailbox = "relay@contoso.test"

// oauthHost is an XOAUTH2 smart host behind STARTTLS (a certificate the returned options trust) whose tokens
// come from ts (client credentials, client "app" with secret).
func oauthHost(t *testing.T, ts *oauthtest.TokenServer, secret string, edit func(*fakePeer)) (*fakePeer, config.Smarthost, Options) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := relaytest.MakeCert(t, dir, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
		f.xoauth2 = func(user, tok string) bool { return user == mailbox && ts.Valid(tok) }
		if edit != nil {
			edit(f)
		}
	})
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := config.NewSmarthost("m365", f.addr)
	h.Auth, h.Username = config.AuthXOAUTH2, mailbox
	h.OAuth2 = &config.OAuth2{Provider: config.ProviderGeneric, TokenURL: ts.URL, ClientID: "app", ClientSecretFile: secretFile}
	return f, h, Options{RootCAs: pool}
}

// TestSmarthost_XOAUTH2: a login with a token from the endpoint; the token is kept while fresh and renewed five
// minutes before it expires (an injected clock), and a session logged in with a token is not reused after the
// token's renewal time.
func TestSmarthost_XOAUTH2(t *testing.T) {
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s3cret", ExpiresIn: 3600})
	f, h, opts := oauthHost(t, ts, "s3cret", nil)
	clk := newTestClock()
	opts.Now = clk.Now
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("t1"), "x@far.test")
	_, rec, obs, _ := runObserved(t, shConfig(h), st, opts)
	waitFor(t, "the first delivery", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
	// While its session lingers, the token reaches its renewal time: the next message must not go out on it.
	clk.Advance(56 * time.Minute)
	put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("t2"), "x@far.test")
	waitFor(t, "the second delivery", 15*time.Second, func() bool { return rec.count(Sent) == 2 })
	if got := strings.Join(f.presentedTokens(), ","); got != "tok-1,tok-2" || ts.Requests() != 2 {
		t.Errorf("tokens presented %s after %d requests, want tok-1 then a renewed tok-2", got, ts.Requests())
	}
	if n := f.sessionCount() / 2; n != 2 { // go-smtp starts a session again after STARTTLS: two per connection
		t.Errorf("%d connections, want 2: a session outlived its token", n)
	}
	for _, m := range f.messages() {
		if !m.TLS {
			t.Errorf("a message went without TLS")
		}
	}
	if o := obs.snapshot(); o.authOK != 2 || len(o.authBad) != 0 {
		t.Errorf("login reports %+v", o)
	}
}

// TestSmarthost_XOAUTH2RevokedToken: a token the host refuses (revoked) is dropped and a fresh one fetched, once;
// the mail goes out with it.
func TestSmarthost_XOAUTH2RevokedToken(t *testing.T) {
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s3cret"})
	f, h, opts := oauthHost(t, ts, "s3cret", nil)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("r1"), "x@far.test")
	s, rec, obs, _ := runObserved(t, shConfig(h), st, opts)
	waitFor(t, "the first delivery", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
	waitFor(t, "its session to end", 15*time.Second, func() bool { return s.SmarthostStatus()[0].Sessions == 0 })
	ts.Revoke()
	put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("r2"), "x@far.test")
	waitFor(t, "the second delivery", 15*time.Second, func() bool { return rec.count(Sent) == 2 })
	if got := strings.Join(f.presentedTokens(), ","); got != "tok-1,tok-1,tok-2" || ts.Requests() != 2 {
		t.Errorf("tokens presented %s after %d requests, want the revoked tok-1 refused, then tok-2", got, ts.Requests())
	}
	if rec.count(Deferred) != 0 || len(obs.snapshot().authBad) != 0 {
		t.Errorf("a revoked token cost a deferral (%d) or a login alert (%v)", rec.count(Deferred), obs.snapshot().authBad)
	}
}

// TestSmarthost_XOAUTH2Failures: a wrong client secret (the endpoint's AADSTS7000215), an endpoint that is down,
// and a host that offers no TLS: the mail is deferred and nothing bounced; a refused secret puts the host down and
// raises the login alert with the provider's code; no token ever crosses a plaintext connection.
func TestSmarthost_XOAUTH2Failures(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "right"})
		f, h, opts := oauthHost(t, ts, "wrong", nil)
		cfg := shConfig(h)
		cfg.Delivery.SmarthostFailoverAfter = 1
		st := openStore(t, t.TempDir())
		put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("w"), "x@far.test")
		s, rec, obs, _ := runObserved(t, cfg, st, opts)
		waitFor(t, "a deferral", 15*time.Second, func() bool { return rec.count(Deferred) == 1 })
		r := rec.list()[0]
		if dsnField(r) != "4.7.0" || !strings.Contains(r.Status.Text, "invalid_client AADSTS7000215") {
			t.Errorf("deferred with %s, want 4.7.0 quoting the provider's code", r.Reply())
		}
		o := obs.snapshot()
		if len(o.authBad) != 1 || !strings.HasPrefix(o.authBad[0], "m365: 4.7.0 token endpoint: invalid_client AADSTS7000215") {
			t.Errorf("login alerts %v", o.authBad)
		}
		if len(o.down) != 1 || s.SmarthostStatus()[0].State != "down" {
			t.Errorf("down reports %v, state %s: want the host down", o.down, s.SmarthostStatus()[0].State)
		}
		if len(f.presentedTokens()) != 0 || rec.count(Bounced) != 0 {
			t.Errorf("tokens %v, %d bounced", f.presentedTokens(), rec.count(Bounced))
		}
	})
	t.Run("endpoint down", func(t *testing.T) {
		ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s"})
		_, h, opts := oauthHost(t, ts, "s", nil)
		ts.Close()
		st := openStore(t, t.TempDir())
		put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("d"), "x@far.test")
		_, rec, obs, _ := runObserved(t, shConfig(h), st, opts)
		waitFor(t, "a deferral", 15*time.Second, func() bool { return rec.count(Deferred) == 1 })
		if r := rec.list()[0]; !strings.Contains(r.Status.Text, "token endpoint") || rec.count(Bounced) != 0 {
			t.Errorf("deferred with %s", r.Reply())
		}
		if o := obs.snapshot(); len(o.authBad) != 0 {
			t.Errorf("an unreachable endpoint raised the login alert: %v", o.authBad)
		}
	})
	t.Run("no TLS offered", func(t *testing.T) {
		ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s"})
		f, h, opts := oauthHost(t, ts, "s", func(f *fakePeer) { f.tls = nil })
		st := openStore(t, t.TempDir())
		put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("p"), "x@far.test")
		_, rec, _, _ := runObserved(t, shConfig(h), st, opts)
		waitFor(t, "a deferral", 15*time.Second, func() bool { return rec.count(Deferred) == 1 })
		if r := rec.list()[0]; dsnField(r) != "4.7.5" {
			t.Errorf("deferred with %s, want 4.7.5", r.Reply())
		}
		if len(f.presentedTokens()) != 0 || ts.Requests() != 0 {
			t.Errorf("a token was fetched (%d) or sent (%v) for a plaintext session", ts.Requests(), f.presentedTokens())
		}
	})
}
