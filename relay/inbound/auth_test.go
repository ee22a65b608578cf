package inbound

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
	"ptrelay/internal/testkit"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// tlsServer starts a server with a test certificate whose clients appear to come from the LAN (192.168.1.20),
// outside allowed_networks and off loopback. Why the address is faked: every socket a test can open is on
// loopback (127/8, ::1), and loopback clients may AUTH without TLS by design. The server decides from the
// connection's RemoteAddr, so the test hands it connections that report a LAN address; nothing in the server
// knows about it.
func tlsServer(t *testing.T, mutate func(*config.Config)) (*testServer, *tls.Config) {
	cfg := testConfig(t)
	certPath, keyPath, client := writeTestCert(t, t.TempDir())
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = certPath, keyPath
	if mutate != nil {
		mutate(cfg)
	}
	return startServer(t, cfg, serverOpt{listener: lanClient}), client
}

func TestAuth_NotBeforeSTARTTLSOffLoopback(t *testing.T) {
	ts, client := tlsServer(t, nil)
	d := dial(t, ts.addr)
	caps := d.ehlo("ex2010.contoso.local")
	if strings.Contains(caps, "AUTH") || !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("before STARTTLS from the LAN, EHLO must offer STARTTLS and no AUTH:\n%s", caps)
	}
	d.send("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass))
	if text := d.expect(538); !strings.Contains(text, "5.7.11") {
		t.Errorf("AUTH before STARTTLS: %q", text)
	}
	d.send("AUTH LOGIN")
	d.expect(538)
	d.send("MAIL FROM:<a@contoso.com>")
	d.expect(250)
	d.send("RCPT TO:<b@example.org>")
	d.expect(554)

	d.send("RSET")
	d.expect(250)
	d.startTLS(client)
	caps = d.ehlo("ex2010.contoso.local")
	if !strings.Contains(caps, "250-AUTH PLAIN LOGIN\n") || !strings.Contains(caps, "250-AUTH=PLAIN LOGIN\n") || strings.Contains(caps, "STARTTLS") {
		t.Fatalf("after STARTTLS EHLO must offer both AUTH lines and no STARTTLS:\n%s", caps)
	}
	d.send("AUTH LOGIN")
	if got := d.expect(334); got != "334 VXNlcm5hbWU6" {
		t.Fatalf("LOGIN first prompt %q", got)
	}
	d.send(b64(testUser))
	if got := d.expect(334); got != "334 UGFzc3dvcmQ6" {
		t.Fatalf("LOGIN second prompt %q", got)
	}
	d.send(b64(testPass))
	d.expect(235)
	code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: t\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("relay after AUTH: %q", text)
	}
	ms := ts.messages()
	if len(ms) != 1 || ms[0].Envelope.AuthUser != testUser || ms[0].Envelope.ClientAddr != "192.168.1.20:40000" {
		t.Fatalf("queue: %+v", ms)
	}
	if !strings.Contains(string(ms[0].body), "with ESMTPSA") {
		t.Errorf("Received field should say ESMTPSA:\n%s", clip(ms[0].body))
	}
}

// Every AUTH form Exchange, Outlook-style senders, .NET and Python use, in upper and lower case.
func TestAuth_AllForms(t *testing.T) {
	ts, client := tlsServer(t, nil)
	forms := []struct {
		name  string
		steps []string // client line, then the expected reply prefix, alternately
	}{
		{"PLAIN initial response", []string{"AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass), "235"}},
		{"plain lower case", []string{"auth plain " + b64("\x00"+testUser+"\x00"+testPass), "235"}},
		{"PLAIN with identity", []string{"AUTH PLAIN " + b64(testUser+"\x00"+testUser+"\x00"+testPass), "235"}},
		{"PLAIN two steps", []string{"AUTH PLAIN", "334", b64("\x00" + testUser + "\x00" + testPass), "235"}},
		{"LOGIN two steps", []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", b64(testUser), "334 UGFzc3dvcmQ6", b64(testPass), "235"}},
		{"login lower case", []string{"auth login", "334 VXNlcm5hbWU6", b64(testUser), "334 UGFzc3dvcmQ6", b64(testPass), "235"}},
		{"LOGIN initial response", []string{"AUTH LOGIN " + b64(testUser), "334 UGFzc3dvcmQ6", b64(testPass), "235"}},
		{"login initial response lower case", []string{"auth login " + b64(testUser), "334 UGFzc3dvcmQ6", b64(testPass), "235"}},
		{"Login mixed case", []string{"AUTH Login", "334 VXNlcm5hbWU6", b64(testUser), "334 UGFzc3dvcmQ6", b64(testPass), "235 2.0.0"}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			d := dial(t, ts.addr)
			d.ehlo("client.contoso.local")
			d.startTLS(client)
			d.ehlo("client.contoso.local")
			for i := 0; i < len(f.steps); i += 2 {
				d.send(f.steps[i])
				_, text := d.reply()
				if !strings.HasPrefix(text, f.steps[i+1]) {
					t.Fatalf("after %q: got %q, want %q", f.steps[i], text, f.steps[i+1])
				}
			}
			d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
			d.expect(250)
			d.expect(250)
			d.send("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass))
			d.expect(503)
		})
	}
}

func TestAuth_WrongPassword(t *testing.T) {
	ts, client := tlsServer(t, nil)
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.startTLS(client)
	d.ehlo("x")
	d.send("AUTH PLAIN " + b64("\x00"+testUser+"\x00wrong"))
	if text := d.expect(535); !strings.HasPrefix(text, "535 5.7.8 ") || !strings.Contains(text, "session") {
		t.Errorf("wrong password: %q", text)
	}
	d.send("AUTH LOGIN " + b64("nosuchuser"))
	d.expect(334)
	d.send(b64(testPass))
	d.expect(535)
	d.send("AUTH PLAIN " + b64(testUser+"\x00"+testPass)) // malformed: one NUL
	if text := d.expect(535); !strings.HasPrefix(text, "535 5.7.8 ") {
		t.Errorf("malformed PLAIN: %q", text)
	}
	// Then 421 before the close (RFC 5321 3.8), without waiting for another command.
	replyIs(t, d.expect(421), "421 4.7.0 Too many failed authentications, closing connection")
	if !d.closed() {
		t.Fatal("connection still open after three failed AUTH attempts")
	}
	d = dial(t, ts.addr)
	d.ehlo("x")
	d.startTLS(client)
	d.ehlo("x")
	d.send("AUTH PLAIN " + b64("other\x00"+testUser+"\x00"+testPass)) // acting for someone else
	d.expect(535)
	d.send("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass))
	d.expect(235) // a new connection has its own budget of failures
	if n := ts.hooks.refusedCount(RefusedAuth); n != 4 {
		t.Errorf("OnRefused(auth_failed) %d times", n)
	}
}

// A loopback client may AUTH without TLS (docs/configuration.md, smtp.auth_requires_tls); 127.0.0.5 is loopback but outside allowed_networks.
func TestAuth_LoopbackWithoutTLS(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dialFrom(t, ts.addr, "127.0.0.5")
	if caps := d.ehlo("x"); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("loopback EHLO lacks AUTH:\n%s", caps)
	}
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
	d.expect(250)
	d.expect(554)
	d.send("RSET", "AUTH LOGIN "+b64(testUser))
	d.expect(250)
	d.expect(334)
	d.send(b64(testPass))
	d.expect(235)
	// Several messages in one authenticated session, with RSET between them.
	for i := 0; i < 3; i++ {
		code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: n\r\n\r\nx\r\n")
		if code != 250 {
			t.Fatalf("message %d: %q", i, text)
		}
		d.send("RSET")
		d.expect(250)
	}
	if ms := ts.messages(); len(ms) != 3 {
		t.Fatalf("queue holds %d messages, want 3", len(ms))
	}
}

func TestAuth_RequiresTLSOff(t *testing.T) {
	ts := startServer(t, func() *config.Config {
		c := testConfig(t)
		c.SMTP.AuthRequiresTLS = false
		return c
	}(), serverOpt{listener: lanClient})
	d := dial(t, ts.addr)
	if caps := d.ehlo("sbs2003.contoso.local"); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("auth_requires_tls = false: EHLO lacks AUTH:\n%s", caps)
	}
	d.send("AUTH LOGIN")
	d.expect(334)
	d.send(b64(testUser))
	d.expect(334)
	d.send(b64(testPass))
	d.expect(235)
}

func TestAuth_NoUsersNoAUTH(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.Users = nil
	ts := startServer(t, cfg, serverOpt{})
	d := dial(t, ts.addr)
	if caps := d.ehlo("x"); strings.Contains(caps, "AUTH") {
		t.Fatalf("AUTH offered without users:\n%s", caps)
	}
	d.send("AUTH PLAIN " + b64("\x00a\x00b"))
	d.expect(502)
}

// The credential cache remembers a verified password without holding it: every key is the user, a NUL and a
// 32-byte HMAC-SHA256 under a key of this table alone, so no key contains the password (plain, base64 or its
// bcrypt hash) and the same password gives another key in another table (nothing to test offline).
func TestUserTable_Cache(t *testing.T) {
	const secret = "correct horse battery staple"
	h, _ := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	users := []config.User{{Name: "u", PasswordHash: string(h)}}
	tab, err := newUserTable(users)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if !tab.check("u", secret) {
			t.Fatal("right password refused")
		}
	}
	if len(tab.cache) != 1 {
		t.Fatalf("cache holds %d entries", len(tab.cache))
	}
	other, err := newUserTable(users)
	if err != nil {
		t.Fatal(err)
	}
	for k := range tab.cache {
		for _, leak := range []string{secret, b64(secret), string(h), "correct horse"} {
			if strings.Contains(k, leak) {
				t.Errorf("cache key %q holds %q", k, leak)
			}
		}
		if len(k) != len("u\x00")+sha256.Size || !strings.HasPrefix(k, "u\x00") {
			t.Errorf("cache key %q is not the user, NUL and an HMAC-SHA256", k)
		}
		if k == other.cacheKey("u", secret) {
			t.Errorf("two tables make the same key for one password: the key does not depend on a per-table secret")
		}
	}
	if tab.check("u", secret+"2") || tab.check("v", secret) || tab.check("u", "") {
		t.Fatal("wrong credentials accepted")
	}
	// A full cache stays at its bound when a new credential verifies.
	tab.cache = make(map[string]struct{})
	for i := 0; i < maxCachedCredentials; i++ {
		tab.cache[tab.cacheKey("u", string(rune(i+1000)))] = struct{}{}
	}
	if !tab.check("u", secret) {
		t.Fatal("right password refused with a full cache")
	}
	if _, ok := tab.cache[tab.cacheKey("u", secret)]; !ok || len(tab.cache) != maxCachedCredentials {
		t.Fatalf("cache size %d (bound %d), new entry present: %v", len(tab.cache), maxCachedCredentials, ok)
	}
	if _, err := newUserTable([]config.User{{Name: "u", PasswordHash: "plain"}}); err == nil {
		t.Fatal("a non-bcrypt hash was accepted")
	}
}

// No password reaches the log, at debug level, whatever the client sends: right and wrong passwords by PLAIN
// and LOGIN, and a malformed PLAIN response that carries one.
func TestAuth_NoSecretInLogs(t *testing.T) {
	logs := &testkit.Buffer{}
	ts := startServer(t, nil, serverOpt{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const wrong = "not the s3cret at all"
	for i, step := range [][]string{
		{"AUTH PLAIN " + b64("\x00"+testUser+"\x00"+wrong), "535"},
		{"AUTH PLAIN " + b64(testUser+"\x00"+testPass), "535"}, // malformed: two fields
		{"AUTH LOGIN " + b64(testUser), "334", b64(wrong), "535"},
		{"AUTH LOGIN", "334", b64(testUser), "334", b64(testPass), "235"},
		{"AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass), "235"},
	} {
		d := dialFrom(t, ts.addr, fmt.Sprintf("127.0.0.%d", 5+i))
		d.ehlo("x")
		for j := 0; j < len(step); j += 2 {
			d.send(step[j])
			if code, text := d.reply(); fmt.Sprint(code) != step[j+1] {
				t.Fatalf("%q: %d %s, want %s", step[j], code, text, step[j+1])
			}
		}
		d.send("QUIT")
		d.expect(221)
	}
	testkit.WaitFor(t, 10*time.Second, "the logins in the log", func() bool {
		return strings.Count(logs.String(), "msg=authenticated") == 2 && strings.Count(logs.String(), "msg=\"AUTH failed\"") == 3
	})
	for _, secret := range []string{testPass, wrong, b64(testPass), b64(wrong), b64("\x00" + testUser + "\x00" + testPass)} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs.String())
		}
	}
}

// After a reload, new sessions see the new users; the credential cache of the old table is gone with it.
func TestAuth_ReloadChangesUsers(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	login := func(pass string) int {
		d := dialFrom(t, ts.addr, "127.0.0.5")
		d.ehlo("x")
		d.send("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+pass))
		code, _ := d.reply()
		return code
	}
	if code := login(testPass); code != 235 {
		t.Fatalf("before reload: %d", code)
	}
	cfg := testConfig(t)
	h, _ := bcrypt.GenerateFromPassword([]byte("new pass"), bcrypt.MinCost)
	cfg.SMTP.Users = []config.User{{Name: testUser, PasswordHash: string(h)}}
	if err := ts.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code := login(testPass); code != 535 {
		t.Fatalf("old password after reload: %d", code)
	}
	if code := login("new pass"); code != 235 {
		t.Fatalf("new password after reload: %d", code)
	}
}
