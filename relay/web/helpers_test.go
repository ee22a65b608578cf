package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/admin"
	"ptrelay/relay/selfcheck"
)

// The console's tests run it over httptest against a real queue store (bbolt in a temporary directory) through
// a real admin.Service; the daemon-level tests (relay/web_e2e_test.go, relay/web_browser_test.go) do the same
// against a running daemon.

const (
	adminPass  = "correct horse battery staple"
	viewerPass = "look but do not touch"
)

type harness struct {
	store  *queue.Store
	srv    *Server
	ts     *httptest.Server
	kicks  atomic.Int32
	log    *testkit.Buffer
	status admin.Status // extra status fields the dashboard shows (last errors, alerts...)

	mu     sync.Mutex
	sleeps []time.Duration
}

func hash(t testing.TB, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, []config.WebUser{
		{Name: "admin", PasswordHash: hash(t, adminPass)},
		{Name: "viewer", PasswordHash: hash(t, viewerPass), ReadOnly: true},
	}, "")
}

// newHarnessWith builds the console for users, as it runs on web.listen listen ("" : no listener rules).
func newHarnessWith(t *testing.T, users []config.WebUser, listen string) *harness {
	t.Helper()
	store, err := queue.Open(queue.Options{Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{store: store, log: &testkit.Buffer{}}
	logger := slog.New(slog.NewTextHandler(h.log, nil))
	status := func() admin.Status {
		st := h.status
		st.Version = "test"
		st.Queue, _ = store.Stats()
		return st
	}
	svc := admin.NewService(store, status, func() { h.kicks.Add(1) }, logger)
	check := func(ctx context.Context) (selfcheck.Result, error) {
		return selfcheck.Result{Hostname: "relay.example.com", Verdict: "unknown", Exit: 2}, nil
	}
	h.srv, err = New(users, Options{Service: svc, Log: logger, Check: check, Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	h.srv.sleep = func(_ context.Context, d time.Duration) {
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
	}
	h.ts = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.ts.Close)
	return h
}

// put queues a message with the given sender, header section and recipients (all queued).
func (h *harness) put(t *testing.T, from, headers string, rcpts ...string) string {
	t.Helper()
	w, err := h.store.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, headers+"\r\nbody of the message\r\n"); err != nil {
		t.Fatal(err)
	}
	var rs []queue.Recipient
	for _, r := range rcpts {
		rs = append(rs, queue.Recipient{Addr: r, State: queue.StateQueued})
	}
	id, err := w.Commit(queue.Envelope{From: from}, rs)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// deferMsg makes a message's recipients deferred after one attempt that got reply, next attempt in an hour.
func (h *harness) deferMsg(t *testing.T, id string, reply queue.Attempt) {
	t.Helper()
	for _, step := range []queue.State{queue.StateActive, queue.StateDeferred} {
		err := h.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
			for i := range m.Recipients {
				r := &m.Recipients[i]
				r.State = step
				if step == queue.StateDeferred {
					r.Attempts = 1
					r.NextAttempt = time.Now().Add(time.Hour)
					reply.Outcome = "deferred"
					r.History = append(r.History, reply)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot is the whole queue as JSON, to show that something did not change it.
func (h *harness) snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	_, err := h.store.Scan(queue.Filter{}, func(it queue.Item) error {
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

func (h *harness) message(t *testing.T, id string) *queue.Message {
	t.Helper()
	m, err := h.store.Get(id)
	if err != nil {
		t.Fatalf("message %s: %v", id, err)
	}
	return m
}

// noRedirects is a client that shows 303s instead of following them.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// request sends method path with user's credentials (user "" sends none) and extra headers.
func (h *harness) request(t *testing.T, method, path, user, pass string, form url.Values, headers map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// get fetches path as the admin and requires 200.
func (h *harness) get(t *testing.T, path string) string {
	t.Helper()
	resp, body := h.request(t, "GET", path, "admin", adminPass, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
	}
	return body
}

// sameOrigin are the headers a browser sends with a form posted from one of the console's own pages.
func (h *harness) sameOrigin() map[string]string {
	return map[string]string{"Origin": h.ts.URL, "Sec-Fetch-Site": "same-origin"}
}

// post sends an action form as the admin from the console's own page.
func (h *harness) post(t *testing.T, form url.Values) (*http.Response, string) {
	t.Helper()
	return h.request(t, "POST", "/actions", "admin", adminPass, form, h.sameOrigin())
}
