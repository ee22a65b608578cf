package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay"
	"ptrelay/relay/admin"
	"ptrelay/relay/alerts"
	"ptrelay/relay/relaytest"
)

// Alerts raised by real causes in the running daemon (relay.New + Run in-process): a DNSBL zone on an
// in-process DNS server that starts listing the egress address, a message deferred by a real smtp-sink past
// queue_oldest, a certificate near its end, refused logins, and a fake free-space function. Alert mail goes to
// another smtp-sink as mail_via; the webhook goes to an httptest receiver that checks every signature with the
// Standard Webhooks Go library.

type alertEnv struct {
	dns    *dnstest.Server
	mx     *relaytest.Sink // the recipient domain's MX
	sh     *relaytest.Sink // the smart host
	inbox  *relaytest.Sink // the internal mail server (alerts.mail_via)
	hook   *hookReceiver
	dir    string
	logs   *testkit.Buffer
	free   atomic.Uint64 // percent free reported by the fake statfs
	secret string
}

func startAlertEnv(t *testing.T, mx relaytest.SinkOptions) *alertEnv {
	t.Helper()
	relaytest.Require(t, "smtp-sink")
	if mx.Addr == "" {
		mx.Addr = mxIP + ":0"
	}
	if mx.Hostname == "" {
		mx.Hostname = "mx.dest.test"
	}
	e := &alertEnv{
		dns:   dnstest.New(t, egressZones("contoso.test. MX 10 mx.dest.test.")...),
		mx:    relaytest.StartSink(t, mx),
		sh:    relaytest.StartSink(t, relaytest.SinkOptions{Addr: smarthost + ":0", Hostname: "smtp.isp.test"}),
		inbox: relaytest.StartSink(t, relaytest.SinkOptions{Hostname: "exchange.contoso.test"}),
		dir:   t.TempDir(),
		logs:  &testkit.Buffer{},
	}
	e.free.Store(50)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e.secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	if err := os.WriteFile(filepath.Join(e.dir, "webhook.secret"), []byte(e.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.hook = newHookReceiver(t, e.secret)
	return e
}

// config is the daemon's configuration; extra is TOML appended to [alerts] (or after it, with its own tables).
func (e *alertEnv) config(t *testing.T, alertKeys, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname = "relay.good.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
[[smarthosts]]
name = "isp"
address = %q
tls = "none"
[routing]
mode = "auto"
[delivery]
port = %d
[queue]
retry_min = "1s"
retry_max = "2s"
[dns]
resolvers = [%q]
timeout = "2s"
[egress]
ip = %q
discovery = []
dnsbl = ["bl.test"]
port25_probe = %q
check_interval = "1s"
[admin]
socket = %q
metrics_listen = "127.0.0.1:0"
[alerts]
mail_to = ["it@contoso.test"]
mail_via = %q
webhook_url = %q
webhook_secret_file = %q
hold = "1s"
%s
%s`, e.dir, e.sh.Addr(), e.mx.Port(), e.dns.Addr(), goodEgress, e.mx.Addr(), filepath.Join(e.dir, "admin.sock"),
		e.inbox.Addr(), e.hook.srv.URL, filepath.Join(e.dir, "webhook.secret"), alertKeys, extra)), "alerts-e2e.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs the daemon until the test ends and returns its SMTP address.
func (e *alertEnv) start(t *testing.T, cfg *config.Config) (*relay.Relay, string) {
	t.Helper()
	if err := config.Refused(cfg.CheckSecrets(config.SecretsOptions{Daemon: true})); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := relay.New(cfg, relay.Options{Log: log, Version: "test", AlertGroupWindow: 300 * time.Millisecond,
		AlertCheckEvery: 100 * time.Millisecond,
		FreeSpace: func(string) (uint64, uint64, error) {
			return e.free.Load() << 30, 100 << 30, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v on a clean stop", err)
			}
		case <-time.After(45 * time.Second):
			t.Error("Run did not return after its context ended")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	var addr string
	testkit.WaitFor(t, 20*time.Second, "the SMTP listener in status", func() bool {
		for _, l := range e.status(t).Listeners {
			if a, ok := strings.CutPrefix(l, "smtp "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	return r, addr
}

func (e *alertEnv) client(t *testing.T) *admin.Client {
	t.Helper()
	c, err := admin.Dial(filepath.Join(e.dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *alertEnv) status(t *testing.T) admin.Status {
	c, err := admin.Dial(filepath.Join(e.dir, "admin.sock"))
	if err != nil {
		return admin.Status{}
	}
	defer c.Close()
	st, _ := c.Status()
	return st
}

// alert returns the condition key in the daemon's alert list, if it holds.
func (e *alertEnv) alert(t *testing.T, key string) (admin.Alert, bool) {
	list, err := e.client(t).Alerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if a.Key == key {
			return a, true
		}
	}
	return admin.Alert{}, false
}

// waitMail waits for an alert mail whose subject contains want and returns it.
func (e *alertEnv) waitMail(t *testing.T, want string) relaytest.SinkMessage {
	t.Helper()
	var got relaytest.SinkMessage
	testkit.WaitFor(t, 30*time.Second, "alert mail "+want, func() bool {
		for _, m := range e.inbox.Messages() {
			if strings.Contains(decodeSubject(m), want) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func decodeSubject(m relaytest.SinkMessage) string {
	s := m.Header().Get("Subject")
	if d, err := new(mimeWordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// hookReceiver is the webhook receiver: it verifies each request with the Standard Webhooks library (with
// its timestamp tolerance: the daemon runs on the real clock) and keeps the payloads.
type hookReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []alerts.Payload
	ids   []string
	bad   []error
	block chan struct{} // when set, requests wait on it
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		block := h.block
		var p alerts.Payload
		if err := wh.Verify(body, r.Header); err != nil {
			h.bad = append(h.bad, err)
		} else if err := json.Unmarshal(body, &p); err != nil {
			h.bad = append(h.bad, err)
		} else {
			h.got = append(h.got, p)
			h.ids = append(h.ids, r.Header.Get("webhook-id"))
		}
		h.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, err := range h.bad {
			t.Errorf("webhook request failed the Standard Webhooks check: %v", err)
		}
	})
	return h
}

func (h *hookReceiver) payloads() []alerts.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]alerts.Payload(nil), h.got...)
}

func (h *hookReceiver) waitType(t *testing.T, typ, status string) alerts.Payload {
	t.Helper()
	var got alerts.Payload
	testkit.WaitFor(t, 30*time.Second, "webhook "+typ+" "+status, func() bool {
		for _, p := range h.payloads() {
			if p.Type == typ && string(p.Data.Status) == status {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

// A DNSBL zone starts listing the egress address: one alert mail tells the listing and the verdict change
// (grouped), the webhook gets one signed POST per condition; when the listing goes, one resolved notice each.
func TestAlertsE2E_ListingFiresAndResolves(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	_, addr := e.start(t, e.config(t, "", ""))
	testkit.WaitFor(t, 30*time.Second, "direct-ok", func() bool {
		for _, es := range e.status(t).Egress {
			if es.Family == "ipv4" && es.Verdict == "direct-ok" {
				return true
			}
		}
		return false
	})
	e.dns.Add("51.0.0.127.bl.test. A 127.0.0.4")

	m := e.waitMail(t, "127.0.0.51 is listed in bl.test")
	subject := decodeSubject(m)
	if subject != "ptrelay: 127.0.0.51 is listed in bl.test (code 127.0.0.4) (and 1 more)" {
		t.Errorf("subject %q", subject)
	}
	body := strings.Join(strings.Fields(string(m.Body())), " ")
	for _, want := range []string{
		"[CRIT] 127.0.0.51 is listed in bl.test",
		"[WARN] mail now goes through the smart host " + smarthost + ": 127.0.0.51 is listed in bl.test (code 127.0.0.4)",
		"What to do: Send through the smart host, find and fix the cause, then request removal at the operator of bl.test.",
		"`ptrelay status`",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("alert mail lacks %q:\n%s", want, m.Body())
		}
	}
	if m.From != "" || m.Header().Get("X-Ptrelay-Alert") != "1" || m.Header().Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("alert mail envelope/header: from %q %v", m.From, m.Header())
	}
	p := e.hook.waitType(t, "ptrelay.listed", "firing")
	if p.Data.Severity != alerts.Crit || p.Data.Host != "relay.good.test" || p.Data.Details["zone"] != "bl.test" ||
		!strings.HasPrefix(p.Text, "[ptrelay] CRIT relay.good.test: 127.0.0.51 is listed in bl.test") {
		t.Errorf("webhook payload %+v", p)
	}
	e.hook.waitType(t, "ptrelay.verdict", "firing")

	st := e.status(t)
	if len(st.Alerts) != 2 || st.Alerts[0].Key != "listed/bl.test/127.0.0.51" || st.Alerts[0].State != "firing" {
		t.Errorf("status alerts %+v", st.Alerts)
	}

	// Mail still flows (through the smart host) while the alert is out.
	send(t, addr, "b@dest.test", "while-listed")
	waitSubject(t, e.sh, "the smart host", "while-listed")

	e.dns.Remove("51.0.0.127.bl.test.", 0)
	e.waitMail(t, "resolved: 127.0.0.51 is no longer listed in bl.test")
	e.hook.waitType(t, "ptrelay.listed", "resolved")
	e.hook.waitType(t, "ptrelay.verdict", "resolved")
	testkit.WaitFor(t, 10*time.Second, "no alert left", func() bool { return len(e.status(t).Alerts) == 0 })
	if n := len(e.inbox.Messages()); n != 2 {
		t.Errorf("%d alert mails for one listing and its end, want 2", n)
	}
	// A notice is counted once its channel has the answer, just after the receiver got it: wait for the count.
	var metrics string
	testkit.WaitForExplained(t, 10*time.Second, func() string { return "metrics:\n" + grepLines(metrics, "alert") }, func() bool {
		metrics = e.metrics(t)
		return strings.Contains(metrics, `ptrelay_alert_notices_total{channel="mail",event="listed",outcome="sent"} 2`) &&
			strings.Contains(metrics, `ptrelay_alert_notices_total{channel="webhook",event="listed",outcome="sent"} 2`)
	})
	if n := len(e.inbox.Messages()); n != 2 {
		t.Errorf("%d alert mails once both notices are counted, want 2", n)
	}
}

func (e *alertEnv) metrics(t *testing.T) string {
	t.Helper()
	for _, l := range e.status(t).Listeners {
		if a, ok := strings.CutPrefix(l, "metrics "); ok {
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + a + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}
	}
	t.Fatal("no metrics listener")
	return ""
}

// A message deferred by the real MX (451 to RCPT) past queue_oldest, held for `hold`: queue.oldest fires;
// when the message leaves the queue, it is resolved.
func TestAlertsE2E_QueueOldest(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{Reject: map[string]string{"RCPT": "451 4.3.0 mailbox busy, try later"}})
	_, addr := e.start(t, e.config(t, "queue_oldest = \"1s\"", ""))
	send(t, addr, "b@dest.test", "stuck-1")
	m := e.waitMail(t, "mail has been waiting")
	body := strings.Join(strings.Fields(string(m.Body())), " ")
	for _, want := range []string{"1 deferred recipient", "451 4.3.0 mailbox busy, try later", "ptrelay queue list"} {
		if !strings.Contains(body, want) {
			t.Errorf("queue alert lacks %q:\n%s", want, m.Body())
		}
	}
	if strings.Contains(body, "b@dest.test") {
		t.Errorf("the alert names a recipient address:\n%s", m.Body())
	}
	e.hook.waitType(t, "ptrelay.queue.oldest", "firing")
	if n, err := e.client(t).Delete(queue.Selector{All: true}); err != nil || n != 1 {
		t.Fatalf("queue delete: %d %v", n, err)
	}
	e.waitMail(t, "resolved: the queue is moving again")
}

// selfSigned writes a certificate for relay.good.test valid until notAfter, and its key.
func selfSigned(t *testing.T, dir string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "relay.good.test"},
		DNSNames: []string{"relay.good.test"}, NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// The STARTTLS certificate expires within the warning window: cert.expiring fires at once; a reload with a
// renewed certificate resolves it.
func TestAlertsE2E_CertExpiring(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	cert, key := selfSigned(t, t.TempDir(), time.Now().Add(5*24*time.Hour))
	cfg := e.config(t, "", "")
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = cert, key
	r, _ := e.start(t, cfg)
	m := e.waitMail(t, "the STARTTLS certificate for relay.good.test expires in 4 days")
	body := strings.Join(strings.Fields(string(m.Body())), " ")
	if !strings.Contains(body, "[CRIT]") || !strings.Contains(body, "Install a renewed certificate at "+cert) {
		t.Errorf("certificate alert:\n%s", m.Body())
	}
	p := e.hook.waitType(t, "ptrelay.cert.expiring", "firing")
	if p.Data.Details["file"] != cert || p.Data.Details["names"] != "relay.good.test" {
		t.Errorf("payload details %v", p.Data.Details)
	}

	renewed, renewedKey := selfSigned(t, t.TempDir(), time.Now().Add(90*24*time.Hour))
	cfg2 := e.config(t, "", "")
	cfg2.SMTP.TLSCert, cfg2.SMTP.TLSKey = renewed, renewedKey
	if err := r.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	e.waitMail(t, "resolved: the STARTTLS certificate in smtp.tls_cert was replaced")
}

// Less free space in data_dir than disk_free (a fake statfs): disk.low after the hold-down, resolved above
// 1.2 times the threshold, not at the threshold.
func TestAlertsE2E_DiskLow(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	e.free.Store(5)
	e.start(t, e.config(t, "", ""))
	m := e.waitMail(t, "only 5% (5.0 GiB) free on "+e.dir)
	if !strings.Contains(string(m.Body()), "451 4.3.0") {
		t.Errorf("disk alert:\n%s", m.Body())
	}
	e.hook.waitType(t, "ptrelay.disk.low", "firing")
	e.free.Store(30)
	e.waitMail(t, "resolved: "+e.dir+" has enough free space again")
}

// Repeated failed logins from one client raise inbound.auth; the user name appears, the password never.
func TestAlertsE2E_InboundAuthFailures(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	hash, err := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t, "", "")
	cfg.SMTP.AuthRequiresTLS = false
	cfg.SMTP.Users = []config.User{{Name: "exchange", PasswordHash: string(hash)}}
	_, addr := e.start(t, cfg)
	for i := 0; i < 6; i++ {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(sasl.NewPlainClient("", "exchange", "wrong-password-"+fmt.Sprint(i))); err == nil {
			t.Fatal("a wrong password was accepted")
		}
		c.Close()
	}
	m := e.waitMail(t, "failed logins from 127.0.0.1")
	if s := decodeSubject(m); !strings.Contains(s, `as "exchange"`) || strings.Contains(string(m.Data), "wrong-password") {
		t.Errorf("auth alert %q:\n%s", s, m.Data)
	}
	// The right password clears it.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "exchange", "right-password")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.waitMail(t, "resolved: 127.0.0.1 logs in again")
}

// Ordinary delivery never waits on a notice: with mail_via accepting connections and never answering, and the
// webhook receiver stalled, a message is still delivered while both notices hang.
func TestAlertsE2E_DeliveryNeverWaitsOnNotices(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{})
	staller, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := staller.Accept()
			if err != nil {
				return
			}
			accepted <- c // never answered
		}
	}()
	t.Cleanup(func() { staller.Close() })
	release := make(chan struct{})
	e.hook.mu.Lock()
	e.hook.block = release
	e.hook.mu.Unlock()
	t.Cleanup(func() { close(release) })

	e.free.Store(1)
	cfg := e.config(t, "", "")
	cfg.Alerts.MailVia = staller.Addr().String()
	_, addr := e.start(t, cfg)
	var stalled net.Conn
	select {
	case stalled = <-accepted:
		defer stalled.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the alert mail never connected to mail_via")
	}
	testkit.WaitFor(t, 30*time.Second, "the webhook notice in flight", func() bool { return len(e.hook.payloads()) > 0 })

	send(t, addr, "b@dest.test", "not-waiting")
	waitSubject(t, e.mx, "the MX", "not-waiting")
	// Both notices are still hanging: the alert mail got no greeting, the webhook no answer.
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := stalled.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the stalled mail_via connection: %v (want it open and silent)", err)
	}
}

// `alerts test` through the admin socket reports per channel; without mail_via the test mail is queued,
// delivered from the null sender, and never counted by the queue alerts even while it is stuck.
func TestAlertsE2E_TestThroughQueueNeverCountsAsQueueAlert(t *testing.T) {
	e := startAlertEnv(t, relaytest.SinkOptions{Reject: map[string]string{"RCPT": "451 4.3.0 try again later"}})
	cfg := e.config(t, "queue_oldest = \"1s\"\nqueue_deferred = 1", "")
	cfg.Alerts.MailVia = ""
	e.start(t, cfg)
	res, err := e.client(t).AlertsTest()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Channel != "mail" || res[0].Outcome != "queued" || !strings.HasPrefix(res[0].Detail, "queued as ") ||
		res[1].Channel != "webhook" || res[1].Outcome != "sent" || res[1].Detail != "HTTP 204 No Content" {
		t.Fatalf("alerts test: %+v", res)
	}
	id := strings.Fields(strings.TrimPrefix(res[0].Detail, "queued as "))[0]
	e.hook.waitType(t, "ptrelay.test", "firing")
	// The MX defers the test mail again and again; wait until it has been tried three times (retry_min 1s:
	// more than 2 s after it was queued, past queue_oldest + hold, with a queue check every 100 ms), then check
	// that no queue condition was raised for it, not even one still within its hold-down.
	c := e.client(t)
	testkit.WaitFor(t, 30*time.Second, "three attempts of the test mail", func() bool {
		m, err := c.Get(id)
		return err == nil && m.Recipients[0].Attempts >= 3
	})
	for _, key := range []string{"queue.oldest", "queue.deferred"} {
		if a, ok := e.alert(t, key); ok {
			t.Errorf("alert mail in the queue raised %s: %+v", key, a)
		}
	}
	m, _ := c.Get(id)
	if m.Envelope.From != "" || m.Recipients[0].Addr != "it@contoso.test" {
		t.Errorf("queued test mail: %+v", m.Envelope)
	}
}

type mimeWordDecoder = mime.WordDecoder
