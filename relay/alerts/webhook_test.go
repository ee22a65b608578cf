package alerts

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"ptrelay/queue"
)

var testKey = bytes.Repeat([]byte("k3y"), 11) // 33 bytes

func testSecret() string { return "whsec_" + base64.StdEncoding.EncodeToString(testKey) }

func openStore(t *testing.T, dir string) *queue.Store {
	t.Helper()
	st, err := queue.Open(queue.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// receiver is an httptest webhook receiver that answers from a script and verifies every request with the
// Standard Webhooks Go library.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	script []func(w http.ResponseWriter) // one per request; the last repeats
	got    []request
	strict bool // verify the timestamp too (real clock)
}

type request struct {
	header http.Header
	body   []byte
	err    error // the library's verdict
}

func newReceiver(t *testing.T, script ...func(w http.ResponseWriter)) *receiver {
	r := &receiver{t: t, script: script}
	wh, err := standardwebhooks.NewWebhook(testSecret())
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		verify := wh.VerifyIgnoringTimestamp
		r.mu.Lock()
		if r.strict {
			verify = wh.Verify
		}
		r.got = append(r.got, request{header: req.Header.Clone(), body: body, err: verify(body, req.Header)})
		step := r.script[min(len(r.got), len(r.script))-1]
		r.mu.Unlock()
		step(w)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

func status(code int) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.WriteHeader(code) }
}

func retryAfter(code int, after string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", after)
		w.WriteHeader(code)
	}
}

type outcome struct {
	ok     bool
	detail string
	final  bool
}

type hookEnv struct {
	c       *webhookChannel
	clock   *clock
	mu      sync.Mutex
	reports []outcome
}

func newHookEnv(t *testing.T, store StateStore, url string) *hookEnv {
	e := &hookEnv{clock: &clock{t0}}
	e.c = &webhookChannel{url: url, key: testKey, hostname: "relay.test", version: "test", store: store,
		client: newHTTPClient(), now: func() time.Time { return e.clock.now }, log: slog.New(slog.DiscardHandler),
		kick: make(chan struct{}, 1),
		report: func(ok bool, detail string, _ Event, final bool) {
			e.mu.Lock()
			e.reports = append(e.reports, outcome{ok, detail, final})
			e.mu.Unlock()
		}}
	return e
}

func (e *hookEnv) run(at time.Time) time.Time {
	e.clock.now = at
	return e.c.runDue(context.Background(), at)
}

func notice() Notice {
	c := listed("192.0.2.7")
	return Notice{ID: "msg_test1", Key: c.Key(), Event: c.Event, Subject: c.Subject, Kind: KindFired, Status: StatusFiring,
		Severity: c.Severity, Summary: c.Summary, Fix: c.Fix, Since: t0, At: t0}
}

func pendingCount(t *testing.T, st StateStore) int {
	n := 0
	_ = st.ViewState(TableWebhook, func(tb queue.StateTable) error {
		return tb.ForEach(func(string, []byte) error { n++; return nil })
	})
	return n
}

func TestWebhook_SignedStandardWebhooks(t *testing.T) {
	rc := newReceiver(t, status(204))
	st := openStore(t, t.TempDir())
	e := newHookEnv(t, st, rc.srv.URL)
	e.c.deliver([]Notice{notice()})
	if next := e.run(t0); !next.IsZero() {
		t.Fatalf("something still pending after a 204 (next %v)", next)
	}
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if r.err != nil {
		t.Fatalf("the Standard Webhooks library rejects the signature: %v", r.err)
	}
	if r.header.Get("webhook-id") != "msg_test1" || r.header.Get("webhook-timestamp") != strconv.FormatInt(t0.Unix(), 10) ||
		r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", r.header)
	}
	var p Payload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "ptrelay.listed" || p.Data.Status != StatusFiring || p.Data.Severity != Crit || p.Data.Host != "relay.test" ||
		p.Data.Details["subject"] != "bl.test/192.0.2.7" || p.Data.Details["fix"] != "request removal" ||
		p.Text != "[ptrelay] CRIT relay.test: 192.0.2.7 is listed in bl.test\nWhat to do: request removal" {
		t.Errorf("payload: %s", r.body)
	}
	if pendingCount(t, st) != 0 || len(e.reports) != 1 || !e.reports[0].ok {
		t.Errorf("pending %d, reports %+v", pendingCount(t, st), e.reports)
	}
	// A wrong key fails verification: the check above can fail.
	bad, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 32)))
	if bad.VerifyIgnoringTimestamp(r.body, r.header) == nil {
		t.Error("a wrong key verifies")
	}
}

// The test notice goes out with the real clock: the library's full check, timestamp tolerance included.
func TestWebhook_TestNoticeVerifiesWithRealClock(t *testing.T) {
	rc := newReceiver(t, status(200))
	rc.strict = true
	e := newHookEnv(t, nil, rc.srv.URL)
	e.c.now = time.Now
	res := e.c.test(context.Background(), TestNotice("relay.test", time.Now()))
	if res.Outcome != "sent" || res.Detail != "HTTP 200 OK" {
		t.Fatalf("test result %+v", res)
	}
	if got := rc.requests(); len(got) != 1 || got[0].err != nil {
		t.Fatalf("requests %+v", got)
	}
	var p Payload
	_ = json.Unmarshal(rc.requests()[0].body, &p)
	if p.Type != "ptrelay.test" || p.Text != "[ptrelay] TEST relay.test: test notice from relay.test" {
		t.Errorf("test payload: %+v", p)
	}
}

func TestWebhook_500RetriedWithSameID(t *testing.T) {
	rc := newReceiver(t, status(500), status(200))
	st := openStore(t, t.TempDir())
	e := newHookEnv(t, st, rc.srv.URL)
	e.c.deliver([]Notice{notice()})
	next := e.run(t0)
	if !next.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("after a 500 the next attempt is at %v, want 5 s later", next)
	}
	e.run(t0.Add(4 * time.Second))
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d requests before the retry was due", n)
	}
	if next := e.run(t0.Add(5 * time.Second)); !next.IsZero() {
		t.Fatalf("still pending after the 200: %v", next)
	}
	got := rc.requests()
	if len(got) != 2 || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") ||
		got[0].header.Get("webhook-timestamp") == got[1].header.Get("webhook-timestamp") || got[1].err != nil ||
		!bytes.Equal(got[0].body, got[1].body) {
		t.Fatalf("retry: %+v", got)
	}
	if len(e.reports) != 2 || e.reports[0].ok || e.reports[0].final || !e.reports[1].ok {
		t.Errorf("reports %+v", e.reports)
	}
}

func TestWebhook_503RetryAfterHonoured(t *testing.T) {
	for _, ra := range []struct{ name, value string }{
		{"seconds", "120"},
		{"date", t0.Add(120 * time.Second).UTC().Format(http.TimeFormat)},
	} {
		t.Run(ra.name, func(t *testing.T) {
			rc := newReceiver(t, retryAfter(503, ra.value), status(200))
			st := openStore(t, t.TempDir())
			e := newHookEnv(t, st, rc.srv.URL)
			e.c.deliver([]Notice{notice()})
			if next := e.run(t0); !next.Equal(t0.Add(120 * time.Second)) {
				t.Fatalf("next attempt at %v, want Retry-After's %v", next, t0.Add(120*time.Second))
			}
			e.run(t0.Add(119 * time.Second))
			if n := len(rc.requests()); n != 1 {
				t.Fatalf("%d requests before Retry-After passed", n)
			}
			e.run(t0.Add(120 * time.Second))
			if n := len(rc.requests()); n != 2 || pendingCount(t, st) != 0 {
				t.Fatalf("%d requests, %d pending", n, pendingCount(t, st))
			}
		})
	}
}

func TestWebhook_410AndOther4xxStop(t *testing.T) {
	for _, code := range []int{410, 400, 401} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			rc := newReceiver(t, status(code))
			st := openStore(t, t.TempDir())
			e := newHookEnv(t, st, rc.srv.URL)
			e.c.deliver([]Notice{notice()})
			if next := e.run(t0); !next.IsZero() {
				t.Fatalf("pending after %d: next %v", code, next)
			}
			e.run(t0.Add(48 * time.Hour))
			if n := len(rc.requests()); n != 1 || pendingCount(t, st) != 0 {
				t.Fatalf("%d requests after %d", n, code)
			}
			if len(e.reports) != 1 || e.reports[0].ok || !e.reports[0].final {
				t.Errorf("reports %+v", e.reports)
			}
		})
	}
}

// The schedule 5 s, 1 min, 5 min, 30 min, 2 h, then every 6 h, until 24 h after the first attempt.
func TestWebhook_GivesUpAfter24h(t *testing.T) {
	rc := newReceiver(t, status(502))
	st := openStore(t, t.TempDir())
	e := newHookEnv(t, st, rc.srv.URL)
	e.c.deliver([]Notice{notice()})
	var at []time.Duration
	next := t0
	for i := 0; i < 20 && !next.IsZero(); i++ {
		at = append(at, next.Sub(t0))
		next = e.run(next)
	}
	want := []time.Duration{0, 5 * time.Second, 65 * time.Second, 365 * time.Second, 2165 * time.Second,
		9365 * time.Second, 30965 * time.Second, 52565 * time.Second, 74165 * time.Second}
	if len(at) != len(want) {
		t.Fatalf("attempts at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("attempts at %v, want %v", at, want)
		}
	}
	last := e.reports[len(e.reports)-1]
	if last.ok || !last.final || !bytes.Contains([]byte(last.detail), []byte("gave up")) {
		t.Errorf("last report %+v", last)
	}
	if pendingCount(t, st) != 0 {
		t.Error("a given-up notice is still pending")
	}
}

// A pending notice survives a restart and goes out with the same webhook-id.
func TestWebhook_PendingSurvivesRestart(t *testing.T) {
	rc := newReceiver(t, status(500), status(200))
	dir := t.TempDir()
	st := openStore(t, dir)
	e := newHookEnv(t, st, rc.srv.URL)
	e.c.deliver([]Notice{notice()})
	e.run(t0)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	e2 := newHookEnv(t, st, rc.srv.URL)
	if next := e2.run(t0.Add(time.Second)); !next.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("after the restart the retry is due at %v", next)
	}
	e2.run(t0.Add(5 * time.Second))
	got := rc.requests()
	if len(got) != 2 || got[1].header.Get("webhook-id") != "msg_test1" || pendingCount(t, st) != 0 {
		t.Fatalf("requests after the restart: %d, pending %d", len(got), pendingCount(t, st))
	}
}

func TestSign_MatchesLibrary(t *testing.T) {
	wh, _ := standardwebhooks.NewWebhook(testSecret())
	body := []byte(`{"type":"ptrelay.test"}`)
	want, err := wh.Sign("msg_1", t0, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(testKey, "msg_1", t0, body); got != want {
		t.Fatalf("Sign = %s, library = %s", got, want)
	}
}

func TestParseRetryAfter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", time.Second}, {"30", 30 * time.Second}, {"-5", 0}, {"soon", 0},
		{t0.Add(time.Hour).Format(http.TimeFormat), time.Hour}, {t0.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(c.in, t0); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T/B/X": "https://hooks.slack.com/…",
		"http://127.0.0.1:8080":                  "http://127.0.0.1:8080",
		"https://ntfy.sh?token=x":                "https://ntfy.sh/…",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
