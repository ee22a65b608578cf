package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/internal/testkit"
	"ptrelay/relay/admin"
	"ptrelay/relay/relaytest"
)

// scrape reads /metrics and returns each sample by its name and labels as printed ("name{a="x",b="y"}").
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", addr, resp.Status)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// TestObserve_MetricsStatusAndJSONLogs sends traffic through a daemon with metrics on, and checks that the
// counters moved by exactly what happened, that `status` shows the listeners, the queue and the last error
// live and "not running" (exit 3) once stopped, and that -log-format json writes only JSON lines.
func TestObserve_MetricsStatusAndJSONLogs(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	metricsAddr := loopbackAddr(t, "127.0.0.1")
	listen := loopbackAddr(t, "127.0.0.1")
	// Mail for deferred.test goes direct, and direct needs DNS, which is a dead port here: deferred.
	cfg := opsConfig(listen, sink.Addr(), "1h", fmt.Sprintf(`
[[routing.rules]]
domains = ["deferred.test"]
via = "direct"

[admin]
metrics_listen = %q
`, metricsAddr))
	cfg = strings.Replace(cfg, "[smtp]\n", "[smtp]\nallowed_networks = [\"127.0.0.1/32\"]\n", 1)
	d := startDaemon(t, relaytest.DaemonOptions{Config: cfg, Args: []string{"-log-format", "json"}})

	before := scrape(t, metricsAddr)
	const sent = 3
	for i := range sent {
		inject(t, d.Addr(), "app@example.com", "user@example.org", fmt.Sprintf("metrics-%d", i))
	}
	deferred := inject(t, d.Addr(), "app@example.com", "user@deferred.test", "metrics-deferred")
	_, err := injectFrom(d.Addr(), "127.0.0.5", "app@example.com", "user@example.org", "metrics-denied")
	if err == nil || !strings.Contains(err.Error(), "554") {
		t.Fatalf("from 127.0.0.5: %v, want 554 relay access denied", err)
	}
	sink.WaitMessages(t, sent, 30*time.Second)
	waitDeferred(t, d, deferred)

	var after map[string]float64
	delta := func(name string) float64 { return after[name] - before[name] }
	testkit.WaitForExplained(t, 30*time.Second, func() string { return fmt.Sprintf("deliveries not counted: %v", after) }, func() bool {
		after = scrape(t, metricsAddr)
		return delta(`ptrelay_deliveries_total{outcome="sent",route="smarthost"}`) >= sent
	})
	for name, want := range map[string]float64{
		`ptrelay_messages_accepted_total`:                                sent + 1,
		`ptrelay_deliveries_total{outcome="sent",route="smarthost"}`:     sent,
		`ptrelay_deliveries_total{outcome="deferred",route="direct"}`:    1,
		`ptrelay_messages_refused_total{reason="relay_denied"}`:          1,
		`ptrelay_deliveries_total{outcome="deferred",route="smarthost"}`: 0,
	} {
		if got := delta(name); got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]float64{
		`ptrelay_queue_recipients{state="deferred"}`: 1,
		`ptrelay_queue_recipients{state="queued"}`:   0,
		`ptrelay_queue_recipients{state="hold"}`:     0,
		`ptrelay_queue_recipients{state="active"}`:   0,
		`ptrelay_inbound_sessions`:                   0,
	} {
		if got, ok := after[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if delta(`ptrelay_inbound_sessions_total`) < sent+2 {
		t.Errorf("ptrelay_inbound_sessions_total moved by %v, want at least %d", delta(`ptrelay_inbound_sessions_total`), sent+2)
	}
	if after[`ptrelay_delivery_duration_seconds_count{route="smarthost"}`] < sent {
		t.Errorf("delivery duration histogram has %v smart host observations, want %d",
			after[`ptrelay_delivery_duration_seconds_count{route="smarthost"}`], sent)
	}
	mustPtrelay(t, d, "queue", "hold", deferred)
	after = scrape(t, metricsAddr)
	if after[`ptrelay_queue_recipients{state="hold"}`] != 1 || after[`ptrelay_queue_recipients{state="deferred"}`] != 0 {
		t.Errorf("after hold: hold %v, deferred %v; want 1, 0", after[`ptrelay_queue_recipients{state="hold"}`],
			after[`ptrelay_queue_recipients{state="deferred"}`])
	}
	mustPtrelay(t, d, "queue", "release", deferred)
	waitDeferred(t, d, deferred)

	// status, live.
	text := mustPtrelay(t, d, "status")
	for _, want := range []string{"Running since:", "smtp " + listen, "metrics " + metricsAddr, "Queue:",
		"1 message", "1 deferred", "Last errors:", "<user@deferred.test>", deferred} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	var live struct {
		Running bool `json:"running"`
		admin.Status
	}
	if out := mustPtrelay(t, d, "status", "-json"); json.Unmarshal([]byte(out), &live) != nil {
		t.Fatalf("status -json: %s", out)
	}
	if !live.Running || live.Uptime == "" || live.Queue.Messages != 1 || live.Queue.ByState["deferred"] != 1 {
		t.Errorf("status -json: running %v, uptime %q, queue %+v", live.Running, live.Uptime, live.Queue)
	}
	// The default socket is ./ptrelay-data/admin.sock in the daemon's working directory: status names it in
	// full, since the admin's shell is elsewhere.
	wantSock := "admin " + filepath.Join(d.Dir(), "ptrelay-data", "admin.sock")
	if l := strings.Join(live.Listeners, "|"); !strings.Contains(l, "smtp "+listen) || !strings.Contains(l, wantSock) ||
		!strings.Contains(l, "metrics "+metricsAddr) {
		t.Errorf("status -json listeners %q, want smtp %s, %s, metrics %s", live.Listeners, listen, wantSock, metricsAddr)
	}
	// The egress check ran on the static egress.ip; the port-25 probe's dead port makes the verdict "smarthost".
	if len(live.Egress) == 0 || live.Egress[0].Family != "ipv4" || live.Egress[0].IP != "192.0.2.10" ||
		live.Egress[0].Verdict != "smarthost" || !strings.Contains(strings.Join(live.Egress[0].Reasons, " "), "port 25") {
		t.Errorf("status -json egress %+v, want ipv4 192.0.2.10 smarthost because of port 25", live.Egress)
	}
	if !strings.Contains(text, "192.0.2.10  smarthost") {
		t.Errorf("status does not show the egress verdict:\n%s", text)
	}
	if v := after[`ptrelay_egress_verdict{family="ipv4",verdict="smarthost"}`]; v != 1 {
		t.Errorf("ptrelay_egress_verdict{ipv4,smarthost} = %v, want 1", v)
	}
	if len(live.LastErrors) == 0 || live.LastErrors[0].ID != deferred || live.LastErrors[0].Rcpt != "user@deferred.test" ||
		live.LastErrors[0].Reply == "" {
		t.Errorf("status -json last errors %+v, want the deferred recipient first", live.LastErrors)
	}

	if code := d.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	// status, offline: exit 3, "not running", and still the queue counts.
	out, code := ptrelay(t, d, "status")
	if code != 3 || !strings.Contains(out, "not running") || !strings.Contains(out, "1 deferred") {
		t.Errorf("status with the daemon stopped: exit %d\n%s\nwant exit 3, not running, the queue", code, out)
	}
	out, code = ptrelay(t, d, "status", "-json")
	var off struct {
		Running bool `json:"running"`
		admin.Status
	}
	if code != 3 || json.Unmarshal([]byte(out), &off) != nil || off.Running || off.Queue.Messages != 1 {
		t.Errorf("status -json with the daemon stopped: exit %d\n%s", code, out)
	}

	// Logs: every line is a JSON object with a time, a level and a message, and names the part of the daemon it
	// comes from in one attribute (no "delivery: " prefixes in messages).
	lines := 0
	components := map[string]int{}
	for _, l := range strings.Split(d.Stderr(), "\n") {
		if l == "" {
			continue
		}
		lines++
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("-log-format json wrote a line that is not JSON: %q", l)
			continue
		}
		if rec["time"] == nil || rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("JSON log line without time, level or msg: %q", l)
		}
		c, _ := rec["component"].(string)
		switch c {
		case "daemon", "inbound", "queue", "delivery", "egress", "admin":
			components[c]++
		default:
			t.Errorf("JSON log line without a known component: %q", l)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, c+": ") {
			t.Errorf("JSON log line repeats its component in the message: %q", l)
		}
	}
	if lines < 5 {
		t.Errorf("only %d log lines", lines)
	}
	for _, c := range []string{"daemon", "inbound", "delivery", "egress", "admin"} {
		if components[c] == 0 {
			t.Errorf("no log line from %s (lines per component: %v)", c, components)
		}
	}
}

// TestObserve_SendUnderJournald: `ptrelay send` delivers a test message through the relay to the sink, and
// under journald (JOURNAL_STREAM set) the text log carries no time= of its own.
func TestObserve_SendUnderJournald(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	d := startDaemon(t, relaytest.DaemonOptions{
		Config: opsConfig(loopbackAddr(t, "127.0.0.1"), sink.Addr(), "1h", ""),
		Env:    []string{"JOURNAL_STREAM=8:123456"},
	})
	out := mustPtrelay(t, d, "send", "-to", "admin@example.org", "-server", d.Addr())
	m := queuedAsRE.FindStringSubmatch(out)
	if !strings.Contains(out, "sent through "+d.Addr()) || m == nil {
		t.Fatalf("ptrelay send: %q", out)
	}
	got := sink.WaitMessages(t, 1, 30*time.Second)[0]
	if got.From != "ptrelay-test@relay.ops.test" || len(got.To) != 1 || got.To[0] != "admin@example.org" ||
		got.Header().Get("Subject") != "ptrelay test message" || !strings.Contains(string(got.Body()), "ptrelay send") {
		t.Errorf("sink got from %q to %v subject %q:\n%s", got.From, got.To, got.Header().Get("Subject"), got.Data)
	}
	if !strings.Contains(d.Stderr(), "id="+m[1]) {
		t.Errorf("the daemon's log does not mention %s", m[1])
	}
	if out, code := ptrelay(t, d, "send", "-server", d.Addr()); code != 2 || !strings.Contains(out, "-to") {
		t.Errorf("send without -to: exit %d, %q; want 2 and -to named", code, out)
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	lines := 0
	for _, l := range strings.Split(d.Stderr(), "\n") {
		if l == "" {
			continue
		}
		lines++
		if strings.Contains(l, "time=") || !strings.HasPrefix(l, "level=") {
			t.Errorf("under journald a log line carries its own time or is not slog text: %q", l)
		}
	}
	if lines < 5 {
		t.Errorf("only %d log lines", lines)
	}
}

// runBinary runs the built ptrelay with stdin in dir and returns its stdout, stderr and exit code.
func runBinary(t *testing.T, dir, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, relaytest.BuildBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"), "PTRELAY_CONFIG=")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ptrelay %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// TestObserve_ConfigCheckHashPasswordVersion covers the commands that need no daemon.
func TestObserve_ConfigCheckHashPasswordVersion(t *testing.T) {
	relaytest.Require(t, "go")
	t.Parallel()
	dir := t.TempDir()

	hash, stderr, code := runBinary(t, dir, "correct horse\n", "hash-password", "-cost", "4")
	hash = strings.TrimSpace(hash)
	if code != 0 || bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")) != nil {
		t.Fatalf("hash-password: exit %d, %q, %s", code, hash, stderr)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse\n")) == nil {
		t.Errorf("hash-password kept the newline in the password")
	}
	if _, stderr, code := runBinary(t, dir, "", "hash-password"); code == 0 || !strings.Contains(stderr, "no password") {
		t.Errorf("hash-password with empty stdin: exit %d, %q", code, stderr)
	}

	good := filepath.Join(dir, "good.toml")
	cfg := opsConfig("127.0.0.1:2525", "smtp.isp.example:587", "5m", "") +
		fmt.Sprintf("\n[[smtp.users]]\nname = \"exchange\"\npassword_hash = %q\n", hash)
	if err := os.WriteFile(good, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runBinary(t, dir, "", "config", "check", "-config", good)
	if code != 0 {
		t.Fatalf("config check on a good file: exit %d\n%s%s", code, out, stderr)
	}
	if strings.Contains(out+stderr, hash) || strings.Contains(out, "$2a$") {
		t.Errorf("config check printed the password hash:\n%s", out)
	}
	for _, want := range []string{"exchange", "<redacted>", "smtp.isp.example:587", "relay.ops.test", good} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(cfg+"\n[queue2]\nretry = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runBinary(t, dir, "", "config", "check", "-config", bad)
	if code != 1 || !strings.Contains(stderr, "queue2") || !strings.Contains(stderr, "bad.toml:") {
		t.Errorf("config check on a bad file: exit %d, stdout %q, stderr %q; want 1 and the key with its line", code, out, stderr)
	}

	out, _, code = runBinary(t, dir, "", "version")
	if code != 0 || !strings.HasPrefix(out, "ptrelay ") || len(strings.Fields(out)) != 2 {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// TestObserve_SendWithAuthOverSTARTTLS: from a network that may not relay, `ptrelay send` is refused without
// credentials and with wrong ones, and delivers with the right ones, over STARTTLS to the relay's own
// self-signed certificate (tls_cert = "auto").
func TestObserve_SendWithAuthOverSTARTTLS(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pass"), 4)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(opsConfig(loopbackAddr(t, "127.0.0.1"), sink.Addr(), "1h", ""), "[smtp]\n",
		"[smtp]\nallowed_networks = [\"127.0.0.2/32\"]\ntls_cert = \"auto\"\n", 1) +
		fmt.Sprintf("\n[[smtp.users]]\nname = \"exchange\"\npassword_hash = %q\n", hash)
	d := startDaemon(t, relaytest.DaemonOptions{Config: cfg})
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.pass"), filepath.Join(dir, "bad.pass")
	if os.WriteFile(good, []byte("s3cret pass\n"), 0o600) != nil || os.WriteFile(bad, []byte("wrong\n"), 0o600) != nil {
		t.Fatal("writing password files")
	}

	if out, code := ptrelay(t, d, "send", "-to", "a@example.org", "-server", d.Addr()); code == 0 ||
		!strings.Contains(out, "Relay access denied") {
		t.Errorf("send without credentials from a network that may not relay: exit %d, %q", code, out)
	}
	if out, code := ptrelay(t, d, "send", "-to", "a@example.org", "-server", d.Addr(), "-user", "exchange",
		"-password-file", bad); code == 0 || !strings.Contains(out, "535") {
		t.Errorf("send with a wrong password: exit %d, %q", code, out)
	}
	out := mustPtrelay(t, d, "send", "-to", "a@example.org", "-server", d.Addr(), "-user", "exchange",
		"-password-file", good, "-subject", "authenticated test")
	if !strings.Contains(out, "queued as") {
		t.Errorf("send with credentials: %q", out)
	}
	msgs := sink.WaitMessages(t, 1, 30*time.Second)
	if len(msgs) != 1 || msgs[0].Header().Get("Subject") != "authenticated test" || msgs[0].To[0] != "a@example.org" {
		t.Fatalf("sink got %v", subjects(msgs))
	}
	// The relay's Received header says how the message came in: ESMTPSA is SMTP with TLS and AUTH (RFC 3848).
	if rcvd := msgs[0].Header().Get("Received"); !strings.Contains(rcvd, "ESMTPSA") {
		t.Errorf("Received header %q does not record STARTTLS and AUTH", rcvd)
	}
	if !strings.Contains(d.Stderr(), "auth=exchange") {
		t.Errorf("the daemon's log does not record the authenticated user:\n%s", tailLog(d))
	}

	// A new password takes effect at SIGHUP: the old one is refused, the new one works.
	newHash, err := bcrypt.GenerateFromPassword([]byte("wrong"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigFile(), []byte(strings.Replace(cfg, string(hash), string(newHash), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no reload logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), `msg="configuration reloaded"`) // serve's line, after Reload returned
	})
	if out, code := ptrelay(t, d, "send", "-to", "a@example.org", "-server", d.Addr(), "-user", "exchange",
		"-password-file", good); code == 0 || !strings.Contains(out, "535") {
		t.Errorf("send with the password replaced at reload: exit %d, %q", code, out)
	}
	mustPtrelay(t, d, "send", "-to", "a@example.org", "-server", d.Addr(), "-user", "exchange", "-password-file", bad,
		"-subject", "after reload")
	if msgs := sink.WaitMessages(t, 2, 30*time.Second); msgs[1].Header().Get("Subject") != "after reload" {
		t.Errorf("sink got %v", subjects(msgs))
	}
}

// TestObserve_ServeRefusesToStart: `serve` exits 1 naming the problem for a broken configuration, and for a
// second daemon on a queue that one already runs, which must leave the first one working.
func TestObserve_ServeRefusesToStart(t *testing.T) {
	relaytest.Require(t, "go")
	t.Parallel()
	broken := startDaemon(t, relaytest.DaemonOptions{
		Config: opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", "\n[queue2]\nx = 1\n"),
		NoWait: true,
	})
	if code, err := broken.Wait(30 * time.Second); err != nil || code != 1 ||
		!strings.Contains(broken.Stderr(), "queue2") || !strings.Contains(broken.Stderr(), "ptrelay.toml:") {
		t.Errorf("serve with an unknown key: exit %d, %v; want 1 and the key with its line:\n%s", code, err, broken.Stderr())
	}

	data := filepath.Join(t.TempDir(), "data")
	withData := func(cfg string) string {
		return strings.Replace(cfg, "[smtp]\n", fmt.Sprintf("data_dir = %q\n\n[smtp]\n", data), 1)
	}
	first := startDaemon(t, relaytest.DaemonOptions{Config: withData(opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", ""))})
	id := inject(t, first.Addr(), "a@example.com", "b@example.org", "first")
	second := startDaemon(t, relaytest.DaemonOptions{
		Config: withData(opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", "")),
		NoWait: true,
	})
	if code, err := second.Wait(30 * time.Second); err != nil || code != 1 || !strings.Contains(second.Stderr(), data) {
		t.Errorf("a second daemon on the same queue: exit %d, %v; want 1 and the data_dir named:\n%s", code, err, second.Stderr())
	}
	if m := queueList(t, first)[id]; m == nil {
		t.Errorf("the first daemon no longer answers with its queue")
	}
	if _, err := injectFrom(first.Addr(), "", "a@example.com", "b@example.org", "still"); err != nil {
		t.Errorf("the first daemon no longer accepts mail: %v", err)
	}
}
