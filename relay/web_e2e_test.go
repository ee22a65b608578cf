package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay"
	"ptrelay/relay/admin"
)

// The web console in the running daemon: its pages read, and its actions change, the daemon's own queue
// through the admin service the socket uses; the tests look at the queue through the admin socket.

const (
	webAdminPass  = "admin password"
	webViewerPass = "viewer password"
)

type webEnv struct {
	dir    string
	logs   *testkit.Buffer
	r      *relay.Relay
	client *admin.Client
	smtp   string // the inbound listener
	url    string // the console, http://127.0.0.1:port
	https  bool
	cfg    string
}

func bcryptHash(t testing.TB, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// webConfigText is a daemon whose smart host refuses connections (mail stays deferred after one attempt), with
// the console on web, two users and the keys of extra.
func webConfigText(t testing.TB, dir, web, smtpExtra string) string {
	return fmt.Sprintf(`
hostname = "relay.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
%s
[[smarthosts]]
name = "isp"
address = "127.0.0.1:9"
tls = "none"
[routing]
mode = "smarthost"
[egress]
ip = "192.0.2.1"
discovery = []
dnsbl = []
port25_probe = ""
[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"
[admin]
socket = %q
[web]
%s
[[web.users]]
name = "admin"
password_hash = %q
[[web.users]]
name = "viewer"
password_hash = %q
read_only = true
`, dir, smtpExtra, filepath.Join(dir, "admin.sock"), web, bcryptHash(t, webAdminPass), bcryptHash(t, webViewerPass))
}

func startWebRelay(t *testing.T, web, smtpExtra string) *webEnv {
	t.Helper()
	e := &webEnv{dir: t.TempDir(), logs: &testkit.Buffer{}}
	if web == "" {
		web = `listen = "127.0.0.1:0"`
	}
	e.cfg = webConfigText(t, e.dir, web, smtpExtra)
	cfg, err := config.Parse([]byte(e.cfg), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	e.https = cfg.Web.TLS()
	e.r, err = relay.New(cfg, relay.Options{Log: slog.New(slog.NewTextHandler(e.logs, nil)), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, "Relay.Run", e.r.Run)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	testkit.WaitFor(t, 20*time.Second, "the admin socket", func() bool {
		e.client, err = admin.Dial(cfg.AdminSocket())
		return err == nil
	})
	t.Cleanup(func() { e.client.Close() })
	st, err := e.client.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Listeners {
		if a, ok := strings.CutPrefix(l, "smtp "); ok {
			e.smtp = a
		}
		if a, ok := strings.CutPrefix(l, "web "); ok {
			scheme := "http://"
			if e.https {
				scheme = "https://"
			}
			e.url = scheme + a
		}
	}
	if e.smtp == "" || e.url == "" {
		t.Fatalf("status lists no smtp or no web listener: %v", st.Listeners)
	}
	return e
}

// deferred sends one message per recipient and waits until each was tried once and deferred; it returns their
// queue IDs in the order of rcpts.
func (e *webEnv) deferred(t *testing.T, rcpts ...string) []string {
	t.Helper()
	for _, rc := range rcpts {
		send(t, e.smtp, rc, "to "+rc)
	}
	var ids []string
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "messages not deferred: " + e.dump(t) }, func() bool {
		ids = ids[:0]
		for _, rc := range rcpts {
			m := e.find(t, rc)
			if m == nil || m.Recipients[0].State != queue.StateDeferred || m.Recipients[0].Attempts != 1 {
				return false
			}
			ids = append(ids, m.ID)
		}
		return true
	})
	return ids
}

// find returns the message to rcpt, or nil.
func (e *webEnv) find(t *testing.T, rcpt string) *queue.Message {
	t.Helper()
	var found *queue.Message
	_, err := e.client.Scan(queue.Filter{}, func(it queue.Item) error {
		if it.Message != nil && it.Message.Recipients[0].Addr == rcpt {
			found = it.Message
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func (e *webEnv) get(t *testing.T, id string) *queue.Message {
	t.Helper()
	m, err := e.client.Get(id)
	if err != nil {
		return nil
	}
	return m
}

// dump is the queue as JSON lines, to compare before and after.
func (e *webEnv) dump(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	_, err := e.client.Scan(queue.Filter{}, func(it queue.Item) error {
		if it.Message != nil {
			j, _ := json.Marshal(it.Message)
			b.Write(j)
			b.WriteByte('\n')
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (e *webEnv) httpClient() *http.Client {
	tr := &http.Transport{}
	if e.https {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(filepath.Join(e.dir, "inbound-tls-cert.pem")); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "relay.test"}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request as user the way a browser sends it from the console's own page.
func (e *webEnv) do(t *testing.T, method, path, user, pass string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", e.url)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := e.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// act posts a queue action as the admin and requires its 303.
func (e *webEnv) act(t *testing.T, verb string, confirmed bool, ids ...string) string {
	t.Helper()
	form := url.Values{"verb": {verb}, "id": ids, "back": {"/queue"}}
	if confirmed {
		form.Set("confirmed", "yes")
	}
	resp, body := e.do(t, "POST", "/actions", "admin", webAdminPass, form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s: %s\n%s", verb, resp.Status, body)
	}
	return resp.Header.Get("Location")
}

// TestWebE2E_ActionsChangeTheDaemonsQueue: each action of the console on the running daemon's queue, and the
// scheduler's reaction to it; every page read leaves the queue as it was.
func TestWebE2E_ActionsChangeTheDaemonsQueue(t *testing.T) {
	e := startWebRelay(t, "", "")
	ids := e.deferred(t, "a@example.org", "b@example.org")
	a, b := ids[0], ids[1]

	// Reading every page changes nothing (the check runs against the daemon's resolver, which fails fast here).
	before := e.dump(t)
	for _, path := range []string{"/", "/queue", "/queue?state=deferred&domain=example.org", "/queue/" + a,
		"/queue/" + a + "?body=1", "/check", "/check?run=1"} {
		resp, page := e.do(t, "GET", path, "admin", webAdminPass, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, page)
		}
	}
	if page := e.do2(t, "/queue"); !strings.Contains(page, a) || !strings.Contains(page, "connection refused") {
		t.Errorf("the queue page lacks %s or its last error", a)
	}
	if page := e.do2(t, "/check?run=1"); !strings.Contains(page, "Verdict:") {
		t.Errorf("the check page ran no check")
	}
	if after := e.dump(t); after != before {
		t.Fatalf("reading pages changed the queue:\nbefore %s\nafter  %s", before, after)
	}

	// A read-only user cannot act.
	resp, _ := e.do(t, "POST", "/actions", "viewer", webViewerPass, url.Values{"verb": {"hold"}, "id": {a}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("read-only hold: %s", resp.Status)
	}

	if loc := e.act(t, "hold", false, a); loc != "/queue?did=hold&n=1" {
		t.Errorf("hold redirects to %q", loc)
	}
	if m := e.get(t, a); m == nil || m.Recipients[0].State != queue.StateHold {
		t.Fatalf("after hold: %+v", m)
	}
	// Release makes it due now: the scheduler tries it again at once (a second refused connection).
	e.act(t, "release", false, a)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return e.dump(t) }, func() bool {
		m := e.get(t, a)
		return m != nil && m.Recipients[0].State == queue.StateDeferred && m.Recipients[0].Attempts == 2
	})
	// Retry too: the deferred message, due in five minutes, is tried at once.
	e.act(t, "retry", false, b)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return e.dump(t) }, func() bool {
		m := e.get(t, b)
		return m != nil && m.Recipients[0].Attempts == 2 && m.Recipients[0].State == queue.StateDeferred
	})
	// Bounce asks first, then fails the recipient with a DSN to the sender (a new message from <>).
	resp, page := e.do(t, "POST", "/actions", "admin", webAdminPass, url.Values{"verb": {"bounce"}, "id": {b}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Bounce 1 message") || e.get(t, b).Recipients[0].BounceNow {
		t.Fatalf("bounce without confirmation: %s", resp.Status)
	}
	e.act(t, "bounce", true, b)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return e.dump(t) }, func() bool {
		return e.get(t, b) == nil && e.find(t, "a@good.test") != nil
	})
	if dsn := e.find(t, "a@good.test"); dsn.Envelope.From != "" || !dsn.Envelope.IsDSN {
		t.Errorf("the bounce is not a DSN from <>: %+v", dsn.Envelope)
	}
	e.act(t, "delete", true, a)
	if e.get(t, a) != nil {
		t.Errorf("after delete %s is still queued", a)
	}

	logs := e.logs.String()
	for _, verb := range []string{"hold", "release", "retry", "bounce", "delete"} {
		if !strings.Contains(logs, `msg="queue `+verb+`"`) {
			t.Errorf("%s is not logged", verb)
		}
	}
	if n := strings.Count(logs, "web_user=admin"); n < 5 {
		t.Errorf("%d log lines name the web user, want one per action", n)
	}
	if !strings.Contains(logs, "component=web") {
		t.Errorf("the console's lines do not say component=web")
	}
}

// do2 fetches a page as the admin.
func (e *webEnv) do2(t *testing.T, path string) string {
	t.Helper()
	resp, page := e.do(t, "GET", path, "admin", webAdminPass, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return page
}

// TestWebE2E_ReloadUsersAndRestartKeys: users and passwords change with a reload; the listener waits for a
// restart, and status says so.
func TestWebE2E_ReloadUsersAndRestartKeys(t *testing.T) {
	e := startWebRelay(t, "", "")
	newCfg := strings.Replace(e.cfg, `name = "viewer"`, `name = "helpdesk"`, 1)
	newCfg = strings.Replace(newCfg, `listen = "127.0.0.1:0"
[[web.users]]`, `listen = "127.0.0.1:8025"
[[web.users]]`, 1)
	cfg, err := config.Parse([]byte(newCfg), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.do(t, "GET", "/", "viewer", webViewerPass, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a user removed by the reload: %s", resp.Status)
	}
	if resp, _ := e.do(t, "GET", "/", "helpdesk", webViewerPass, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a user added by the reload: %s", resp.Status)
	}
	st, err := e.client.Status()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.PendingRestart, ",") != "web.listen" {
		t.Errorf("pending restart %v, want web.listen", st.PendingRestart)
	}
	if page := e.do2(t, "/"); !strings.Contains(page, "<code>web.listen</code>") {
		t.Errorf("the status page does not show the pending restart")
	}
}

// TestWebE2E_TLSAndUnixSocket: HTTPS with the smtp self-signed pair (tls_cert = "auto"), and plain HTTP on a
// Unix socket of mode 0600.
func TestWebE2E_TLSAndUnixSocket(t *testing.T) {
	t.Run("auto certificate", func(t *testing.T) {
		e := startWebRelay(t, "listen = \"127.0.0.1:0\"\ntls_cert = \"auto\"", `tls_cert = "auto"`)
		resp, page := e.do(t, "GET", "/", "admin", webAdminPass, nil)
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || !strings.Contains(page, "Status</h1>") {
			t.Fatalf("HTTPS: %s (TLS %v)", resp.Status, resp.TLS != nil)
		}
		want, _ := os.ReadFile(filepath.Join(e.dir, "inbound-tls-cert.pem"))
		if got := resp.TLS.PeerCertificates[0]; !strings.Contains(string(want), "CERTIFICATE") ||
			!certInPEM(got, want) {
			t.Errorf("the console's certificate is not the smtp pair's")
		}
		plain := &http.Client{Timeout: 10 * time.Second}
		if resp, err := plain.Get(strings.Replace(e.url, "https://", "http://", 1)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain HTTP answered on the HTTPS listener")
			}
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		dir := t.TempDir()
		sock := filepath.Join(dir, "web.sock")
		e := startWebRelay(t, fmt.Sprintf("listen = %q", "unix:"+sock), "")
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket: %v, mode %v", err, fi.Mode())
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
		req, _ := http.NewRequest("GET", "http://localhost/queue", nil)
		req.SetBasicAuth("admin", webAdminPass)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET over the socket: %s", resp.Status)
		}
		if !strings.HasPrefix(e.url, "http://unix:/") {
			t.Errorf("status names the socket as %q", e.url)
		}
	})
}

func certInPEM(c *x509.Certificate, pemData []byte) bool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "relay.test", CurrentTime: time.Now()})
	return err == nil
}

// TestWebE2E_PlaintextOffLoopbackRefused: the configuration that would send passwords in clear over the LAN
// does not load.
func TestWebE2E_PlaintextOffLoopbackRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := config.Parse([]byte(webConfigText(t, dir, `listen = "0.0.0.0:0"`, "")), "test.toml")
	if err == nil || !strings.Contains(err.Error(), "web.tls_cert: is empty but web.listen") {
		t.Fatalf("plaintext console on every address: %v", err)
	}
}
