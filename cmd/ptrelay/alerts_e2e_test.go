package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/relay/admin"
	"ptrelay/relay/relaytest"
)

// `ptrelay alerts list|test` and `ptrelay status` against the built daemon, then the same commands with the
// daemon stopped. The condition is a real one: the STARTTLS certificate (relaytest's, valid for 7 days) is
// within the warning window at start.
func TestOps_AlertsCommands(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	inbox := relaytest.StartSink(t, relaytest.SinkOptions{Hostname: "exchange.ops.test"})
	var hookStatus atomic.Int32
	hookStatus.Store(http.StatusNoContent)
	var hooks atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		w.WriteHeader(int(hookStatus.Load()))
	}))
	t.Cleanup(hook.Close)
	cert, key, _ := relaytest.MakeCert(t, t.TempDir(), "relay.ops.test")
	extra := fmt.Sprintf(`
[alerts]
mail_to = ["it@ops.test"]
mail_via = %q
webhook_url = %q
`, inbox.Addr(), hook.URL)
	cfg := opsConfig(loopbackAddr(t, "127.0.0.1"), loopbackAddr(t, "127.0.0.3"), "1h", extra)
	cfg = strings.Replace(cfg, "[smtp]\n", fmt.Sprintf("[smtp]\ntls_cert = %q\ntls_key = %q\n", cert, key), 1)
	d := startDaemon(t, relaytest.DaemonOptions{Config: cfg})

	var list string
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "alerts list:\n" + list + "\ndaemon log:\n" + tailLog(d) }, func() bool {
		list = mustPtrelay(t, d, "alerts", "list")
		return strings.Contains(list, "the STARTTLS certificate for relay.ops.test expires in 6 days")
	})
	for _, want := range []string{"CRIT ", "(firing; since ", "key:   cert.expiring/smtp.tls_cert", "fix:   Install a renewed certificate at " + cert} {
		if !strings.Contains(list, want) {
			t.Errorf("alerts list lacks %q:\n%s", want, list)
		}
	}
	// Beside it, what this test configuration really has: DNS on a dead port (pending: within its hold-down)
	// and port 25 blocked, which with routing.mode = "smarthost" changes nothing (info, digest only).
	var js []admin.Alert
	if err := json.Unmarshal([]byte(mustPtrelay(t, d, "alerts", "list", "-json")), &js); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, a := range js {
		states[a.Key] = a.Severity + " " + a.State
	}
	if states["cert.expiring/smtp.tls_cert"] != "crit firing" || states["dns.failing"] != "crit pending" || states["port25/ipv4"] != "info quiet" {
		t.Errorf("alerts list -json: %+v", js)
	}
	if st := mustPtrelay(t, d, "status"); !strings.Contains(st, "Alerts:\n  CRIT  the STARTTLS certificate for relay.ops.test expires in") {
		t.Errorf("status does not show the alert:\n%s", st)
	}

	out := mustPtrelay(t, d, "alerts", "test")
	if !strings.Contains(out, "mail:    sent    via "+inbox.Addr()+": 250 ") || !strings.Contains(out, "webhook: sent    HTTP 204 No Content") {
		t.Errorf("alerts test:\n%s", out)
	}
	if got := inbox.WaitMessages(t, 1, 10*time.Second); !strings.Contains(got[0].Header().Get("Subject"), "test notice from relay.ops.test") {
		t.Errorf("test mail subject %q", got[0].Header().Get("Subject"))
	}
	hookStatus.Store(http.StatusInternalServerError)
	out, code := ptrelay(t, d, "alerts", "test")
	if code != 1 || !strings.Contains(out, "webhook: failed  HTTP 500 Internal Server Error") {
		t.Errorf("alerts test with a failing webhook: exit %d\n%s", code, out)
	}

	if code := d.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, tailLog(d))
	}
	out, code = ptrelay(t, d, "alerts", "list")
	if code != 3 || !strings.Contains(out, "ptrelay is not running") || !strings.Contains(out, "the conditions as recorded when it stopped") ||
		!strings.Contains(out, "cert.expiring/smtp.tls_cert") {
		t.Errorf("alerts list offline: exit %d\n%s", code, out)
	}
	hookStatus.Store(http.StatusOK)
	before := hooks.Load()
	out, code = ptrelay(t, d, "alerts", "test")
	if code != 0 || !strings.Contains(out, "ptrelay is not running") || !strings.Contains(out, "webhook: sent    HTTP 200 OK") ||
		!strings.Contains(out, "mail:    sent") || hooks.Load() != before+1 {
		t.Errorf("alerts test offline: exit %d\n%s", code, out)
	}
	inbox.WaitMessages(t, 2, 10*time.Second)
}
