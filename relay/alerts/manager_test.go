package alerts

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// countingMetrics records what the manager counts.
type countingMetrics struct {
	mu      sync.Mutex
	notices map[string]int // event/channel/outcome
	firing  map[string]int
}

func (c *countingMetrics) AlertNotice(event, channel, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notices == nil {
		c.notices = map[string]int{}
	}
	c.notices[event+"/"+channel+"/"+outcome]++
}

func (c *countingMetrics) AlertsFiring(m map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.firing = m
}

func (c *countingMetrics) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notices[k]
}

// newTestManager builds a manager on st with a fake clock; the test drives it with step and hookRun.
func newTestManager(t *testing.T, st *queue.Store, c *clock, cfg Config) (*Manager, *countingMetrics) {
	t.Helper()
	met := &countingMetrics{}
	cfg.Settings.Hostname = "relay.test"
	cfg.Settings.Location = time.UTC
	cfg.Settings.Hold = 10 * time.Minute
	cfg.Settings.Repeat = 24 * time.Hour
	cfg.Settings.Digest = "off"
	mg, err := New(cfg, Options{Store: st, Now: func() time.Time { return c.now }, Metrics: met,
		Log: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mg.cancel)
	return mg, met
}

// advance steps the manager and its webhook worker over d in steps of step, waiting for mail sends each time.
func advance(mg *Manager, c *clock, d, step time.Duration) {
	end := c.now.Add(d)
	for !c.now.After(end) {
		mg.step(c.now)
		mg.hook.runDue(context.Background(), c.now)
		mg.sends.Wait()
		mg.step(c.now)
		c.add(step)
	}
}

func TestManager_RestartWithoutResend(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	rc := newReceiver(t, status(200))
	c := &clock{t0}
	cfg := Config{WebhookURL: rc.srv.URL, WebhookKey: testKey}
	mg, met := newTestManager(t, st, c, cfg)
	mg.Raise(listed("192.0.2.7"))
	mg.Raise(deferred(70)) // held: pending at the restart
	advance(mg, c, time.Minute, 5*time.Second)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d webhook requests for one listing", n)
	}
	if met.get("listed/webhook/sent") != 1 || met.firing["listed"] != 1 {
		t.Errorf("metrics %v %v", met.notices, met.firing)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, dir)
	mg2, _ := newTestManager(t, st, c, cfg)
	if a := mg2.Alerts(); len(a) != 2 {
		t.Fatalf("conditions after the restart: %+v", a)
	}
	// The sources report again what still holds: nothing is told twice; the held one fires once.
	mg2.Raise(listed("192.0.2.7"))
	mg2.Raise(deferred(75))
	advance(mg2, c, 3*time.Hour, time.Minute)
	var types []string
	for _, r := range rc.requests() {
		var p Payload
		_ = json.Unmarshal(r.body, &p)
		types = append(types, p.Type)
	}
	if strings.Join(types, ",") != "ptrelay.listed,ptrelay.queue.deferred" {
		t.Fatalf("webhook notices across the restart: %v", types)
	}
}

// A webhook that fails for an hour is reported by mail, and only by mail; its recovery too.
func TestManager_FailingWebhookToldByMail(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	rc := newReceiver(t, status(500))
	st := openStore(t, t.TempDir())
	c := &clock{t0}
	mg, met := newTestManager(t, st, c, Config{MailTo: []string{"it@contoso.test"}, MailVia: sink.Addr(), WebhookURL: rc.srv.URL, WebhookKey: testKey})
	mg.Raise(listed("192.0.2.7"))
	advance(mg, c, 70*time.Minute, 5*time.Second)
	msgs := sink.WaitMessages(t, 2, 10*time.Second)
	if s := msgs[0].Header().Get("Subject"); !strings.Contains(s, "192.0.2.7 is listed") {
		t.Errorf("first mail: %q", s)
	}
	if s := msgs[1].Header().Get("Subject"); !strings.HasPrefix(s, "ptrelay: the alert webhook fails since 10:00 UTC (HTTP 500") {
		t.Errorf("second mail: %q", s)
	}
	for _, r := range rc.requests() {
		if strings.Contains(string(r.body), "alerts.channel") {
			t.Fatal("the failing webhook was sent its own failure notice")
		}
	}
	if met.get("listed/mail/sent") != 1 || met.get("listed/webhook/retried") < 4 {
		t.Errorf("metrics %v", met.notices)
	}
	// The webhook works again: one resolved notice, by mail.
	rc.mu.Lock()
	rc.script = append(rc.script, status(200))
	rc.mu.Unlock()
	advance(mg, c, 7*time.Hour, time.Minute)
	msgs = sink.WaitMessages(t, 3, 10*time.Second)
	if s := msgs[2].Header().Get("Subject"); s != "ptrelay: resolved: the alert webhook works again" {
		t.Errorf("third mail: %q", s)
	}
}

func TestManager_TestReportsEveryChannel(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	rc := newReceiver(t, status(503))
	st := openStore(t, t.TempDir())
	c := &clock{time.Now()}
	mg, met := newTestManager(t, st, c, Config{MailTo: []string{"it@contoso.test"}, MailVia: sink.Addr(), WebhookURL: rc.srv.URL})
	res := mg.Test(context.Background())
	if len(res) != 2 || res[0].Channel != "mail" || res[0].Outcome != "sent" || res[1].Channel != "webhook" ||
		res[1].Outcome != "failed" || res[1].Detail != "HTTP 503 Service Unavailable" {
		t.Fatalf("results %+v", res)
	}
	if m := sink.WaitMessages(t, 1, 10*time.Second)[0]; m.Header().Get("Subject") != "ptrelay: test notice from relay.test" {
		t.Errorf("test mail subject %q", m.Header().Get("Subject"))
	}
	if met.get("test/mail/sent") != 1 || met.get("test/webhook/failed") != 1 {
		t.Errorf("metrics %v", met.notices)
	}
	// An unsigned webhook carries no signature header.
	if r := rc.requests()[0]; r.header.Get("webhook-signature") != "" || r.header.Get("webhook-id") == "" {
		t.Errorf("headers %v", r.header)
	}
	// No channel: no result.
	mg.Reload(Config{})
	if res := mg.Test(context.Background()); len(res) != 0 {
		t.Errorf("results without channels: %+v", res)
	}
}

// Clears cost nothing when nothing was wrong, and a clear after a restart still reaches a loaded condition.
func TestManager_ClearOfUnknownKeyIsFree(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	c := &clock{t0}
	mg, _ := newTestManager(t, st, c, Config{})
	mg.AuthSucceeded("192.0.2.50")
	mg.TLSPolicyDelivered("example.org")
	if len(mg.ops) != 0 {
		t.Fatalf("%d operations queued by clears of nothing", len(mg.ops))
	}
	for range 6 {
		mg.AuthFailed("192.0.2.50", "exchange")
	}
	advance(mg, c, time.Minute, 10*time.Second)
	if !mg.Holds(EventInboundAuth, "192.0.2.50") {
		t.Fatal("six failed logins did not raise inbound.auth")
	}
	_ = st.Close()
	st = openStore(t, dir)
	mg2, _ := newTestManager(t, st, c, Config{})
	mg2.AuthSucceeded("192.0.2.50")
	advance(mg2, c, time.Minute, 10*time.Second)
	if a := mg2.Alerts(); len(a) != 0 {
		t.Fatalf("a successful login after the restart left %+v", a)
	}
}

func TestFailureTracker(t *testing.T) {
	tr := newFailureTracker(10*time.Minute, 5)
	now := t0
	for i := 1; i <= 5; i++ {
		if _, _, raise := tr.fail(now, "c", "u"); raise {
			t.Fatalf("raised at failure %d", i)
		}
		now = now.Add(time.Minute)
	}
	n, users, raise := tr.fail(now, "c", "v")
	if !raise || n != 6 || strings.Join(users, ",") != "u,v" {
		t.Fatalf("sixth failure: %d %v %v", n, users, raise)
	}
	if _, _, raise := tr.fail(now.Add(time.Minute), "c", "u"); raise {
		t.Error("raised again within raiseEvery")
	}
	// Failures older than the window do not count.
	if n, _, _ := tr.fail(now.Add(30*time.Minute), "c", "u"); n != 1 {
		t.Errorf("count after the window: %d", n)
	}
	for i := range maxTracked + 10 {
		tr.fail(now, "x"+itoa(i), "")
	}
	if len(tr.subj) > maxTracked {
		t.Errorf("%d subjects tracked", len(tr.subj))
	}
}

// The observation methods return at once even when the manager's goroutine is stuck (here: not running at
// all), so neither a session nor a delivery can ever wait on alerting.
func TestManager_ObservationsNeverBlock(t *testing.T) {
	st := openStore(t, t.TempDir())
	c := &clock{t0}
	mg, _ := newTestManager(t, st, c, Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			mg.Raise(listed("192.0.2." + itoa(i%250)))
			mg.AuthFailed("192.0.2.1", "x")
			mg.SmarthostDown("isp", "connection refused", i)
			mg.TLSPolicyDeferred("example.org", "MTA-STS", "no STARTTLS")
			mg.Clear(EventListed, "bl.test/192.0.2."+itoa(i%250))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("observation calls blocked while the manager was not running")
	}
	mg.step(c.now)
	var keys []string
	for _, a := range mg.Alerts() {
		keys = append(keys, a.Key)
	}
	if strings.Join(keys, " ") != "smarthost.down/isp inbound.auth/192.0.2.1 tls.policy/example.org" {
		t.Errorf("after the burst: %v (every listing raised then cleared)", keys)
	}
}

// The conditions the delivery side raises through the manager's methods: a refused login fires at once, a
// host down waits for the hold-down, TLS-policy deferrals fire at the third recipient, and each clears with the
// call that says it works again; secret dates go through Sync like certificates.
func TestManager_DeliverySideConditions(t *testing.T) {
	st := openStore(t, t.TempDir())
	c := &clock{t0}
	mg, _ := newTestManager(t, st, c, Config{})
	state := func(key string) string {
		for _, a := range mg.Alerts() {
			if a.Key == key {
				return a.Severity.String() + " " + a.State
			}
		}
		return "none"
	}
	mg.SmarthostLoginRefused("m365", "535 5.7.3 Authentication unsuccessful")
	mg.SmarthostDown("isp", "dial tcp 192.0.2.25:587: connection refused", 12)
	mg.TLSPolicyDeferred("partner.example", "MTA-STS", "mx.partner.example has no valid certificate")
	mg.TLSPolicyDeferred("partner.example", "MTA-STS", "mx.partner.example has no valid certificate")
	advance(mg, c, time.Second, time.Second)
	if state("smarthost.auth/m365") != "crit firing" || state("smarthost.down/isp") != "crit pending" || state("tls.policy/partner.example") != "none" {
		t.Fatalf("after the first reports: %+v", mg.Alerts())
	}
	mg.TLSPolicyDeferred("partner.example", "MTA-STS", "mx.partner.example has no valid certificate")
	advance(mg, c, 11*time.Minute, 30*time.Second)
	if state("smarthost.down/isp") != "crit firing" || state("tls.policy/partner.example") != "warn firing" {
		t.Fatalf("after the hold-down: %+v", mg.Alerts())
	}
	secret := func(at time.Time) []Condition {
		if cond, ok := SecretExpiring("m365", t0.Add(10*24*time.Hour), at); ok {
			return []Condition{cond}
		}
		return nil
	}
	mg.Sync(EventSecretExpiring, "", secret(c.now))
	advance(mg, c, time.Second, time.Second)
	if state("secret.expiring/m365") != "warn firing" {
		t.Fatalf("secret 10 days before: %+v", mg.Alerts())
	}
	c.add(4 * 24 * time.Hour)
	mg.Sync(EventSecretExpiring, "", secret(c.now))
	advance(mg, c, time.Second, time.Second)
	if state("secret.expiring/m365") != "crit firing" {
		t.Fatalf("secret 6 days before: %+v", mg.Alerts())
	}
	mg.SmarthostLoginOK("m365")
	mg.SmarthostUp("isp")
	mg.TLSPolicyDelivered("partner.example")
	mg.Sync(EventSecretExpiring, "", nil) // renewed: the date moved beyond the first stage
	advance(mg, c, time.Second, time.Second)
	if a := mg.Alerts(); len(a) != 0 {
		t.Fatalf("after the good news: %+v", a)
	}
}
