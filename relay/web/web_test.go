package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/admin"
)

func TestAuth_401WithoutOrWithWrongCredentials(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, user, pass string
		want             int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "admin", "wrong", http.StatusUnauthorized},
		{"unknown user", "root", adminPass, http.StatusUnauthorized},
		{"another user's password", "viewer", adminPass, http.StatusUnauthorized},
		{"empty password", "admin", "", http.StatusUnauthorized},
		{"right", "admin", adminPass, http.StatusOK},
		{"right again (cached)", "admin", adminPass, http.StatusOK},
		{"read-only user", "viewer", viewerPass, http.StatusOK},
	}
	for _, c := range cases {
		for _, path := range []string{"/", "/queue", "/check", "/static/style.css", "/queue/" + strings.Repeat("A", 13)} {
			resp, body := h.request(t, "GET", path, c.user, c.pass, nil, nil)
			want := c.want
			if want == http.StatusOK && strings.HasPrefix(path, "/queue/") {
				want = http.StatusNotFound // no such message, but past the login
			}
			if resp.StatusCode != want {
				t.Errorf("%s: GET %s = %s, want %d", c.name, path, resp.Status, want)
			}
			if want == http.StatusUnauthorized {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="ptrelay"`) {
					t.Errorf("%s: GET %s: WWW-Authenticate %q", c.name, path, got)
				}
				if strings.Contains(body, "Queue ID") || strings.Contains(body, "Status</h1>") {
					t.Errorf("%s: GET %s: a 401 shows the page:\n%s", c.name, path, body)
				}
			}
		}
	}
	// Only the failures were slowed down; no credentials at all is the browser's first request, not a failure.
	h.mu.Lock()
	n := len(h.sleeps)
	h.mu.Unlock()
	if n != 4*5 {
		t.Errorf("%d delays after failed logins, want %d", n, 4*5)
	}
	if !strings.Contains(h.log.String(), "login failed") || !strings.Contains(h.log.String(), "web_user=root") {
		t.Errorf("failed logins are not logged with the name tried:\n%s", h.log.String())
	}
}

func TestAuth_FailureDelayGrowsPerClient(t *testing.T) {
	var f failures
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var got []time.Duration
	for i := range 7 {
		got = append(got, f.add("192.0.2.1", t0.Add(time.Duration(i)*time.Second)))
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 4 * time.Second, 4 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	if d := f.add("192.0.2.2", t0.Add(10*time.Second)); d != firstFailureDelay {
		t.Errorf("another client waits %v, want %v: one client's failures slow down only that client", d, firstFailureDelay)
	}
	if d := f.add("192.0.2.1", t0.Add(time.Hour)); d != firstFailureDelay {
		t.Errorf("after a quiet hour the delay is %v, want it back to %v", d, firstFailureDelay)
	}
	f.add("192.0.2.1", t0.Add(time.Hour+time.Second))
	f.forget("192.0.2.1")
	if d := f.add("192.0.2.1", t0.Add(time.Hour+2*time.Second)); d != firstFailureDelay {
		t.Errorf("after a login the delay is %v, want %v", d, firstFailureDelay)
	}
	for i := range maxFailureClients + 10 {
		f.add("10.0."+string(rune('a'+i%26))+strings.Repeat("x", i/26), t0)
	}
	if len(f.clients) > maxFailureClients {
		t.Errorf("%d clients remembered, bound %d", len(f.clients), maxFailureClients)
	}
}

func TestSecurityHeaders_OnEveryAnswer(t *testing.T) {
	h := newHarness(t)
	id := h.put(t, "a@example.com", "Subject: x\r\n", "b@example.org")
	reqs := []struct {
		method, path, user, pass string
		form                     url.Values
		headers                  map[string]string
		want                     int
	}{
		{"GET", "/", "", "", nil, nil, 401},
		{"GET", "/", "admin", adminPass, nil, nil, 200},
		{"GET", "/queue", "admin", adminPass, nil, nil, 200},
		{"GET", "/queue/" + id, "admin", adminPass, nil, nil, 200},
		{"GET", "/static/style.css", "admin", adminPass, nil, nil, 200},
		{"GET", "/nothing-here", "admin", adminPass, nil, nil, 404},
		{"POST", "/actions", "viewer", viewerPass, url.Values{"verb": {"hold"}, "id": {id}}, h.sameOrigin(), 403},
		{"POST", "/actions", "admin", adminPass, url.Values{"verb": {"hold"}, "id": {id}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"POST", "/actions", "admin", adminPass, url.Values{"verb": {"hold"}, "id": {id}}, h.sameOrigin(), 303},
	}
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for _, rq := range reqs {
		resp, _ := h.request(t, rq.method, rq.path, rq.user, rq.pass, rq.form, rq.headers)
		if resp.StatusCode != rq.want {
			t.Errorf("%s %s as %q: %s, want %d", rq.method, rq.path, rq.user, resp.Status, rq.want)
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %s (%d): %s = %q, want %q", rq.method, rq.path, resp.StatusCode, k, got, v)
			}
		}
	}
}

// TestCSRF_Matrix: the browser sends Basic credentials with a form another site posts to the console, as it
// would cookies; net/http.CrossOriginProtection refuses such requests from what the browser says of them.
func TestCSRF_Matrix(t *testing.T) {
	cases := []struct {
		name    string
		headers func(h *harness) map[string]string
		want    int
	}{
		{"same-origin form", func(h *harness) map[string]string { return h.sameOrigin() }, http.StatusSeeOther},
		{"Sec-Fetch-Site same-origin only", func(*harness) map[string]string {
			return map[string]string{"Sec-Fetch-Site": "same-origin"}
		}, http.StatusSeeOther},
		{"Origin equal to the host only", func(h *harness) map[string]string {
			return map[string]string{"Origin": h.ts.URL}
		}, http.StatusSeeOther},
		{"no browser headers (curl)", func(*harness) map[string]string { return nil }, http.StatusSeeOther},
		{"Sec-Fetch-Site cross-site", func(h *harness) map[string]string {
			return map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
		}, http.StatusForbidden},
		{"Sec-Fetch-Site cross-site without Origin", func(*harness) map[string]string {
			return map[string]string{"Sec-Fetch-Site": "cross-site"}
		}, http.StatusForbidden},
		{"Sec-Fetch-Site same-site (another port or subdomain)", func(*harness) map[string]string {
			return map[string]string{"Sec-Fetch-Site": "same-site"}
		}, http.StatusForbidden},
		{"foreign Origin", func(*harness) map[string]string {
			return map[string]string{"Origin": "http://evil.example"}
		}, http.StatusForbidden},
		{"foreign Origin on another port of the same host", func(h *harness) map[string]string {
			return map[string]string{"Origin": "http://127.0.0.1:1"}
		}, http.StatusForbidden},
		{"Origin null (a sandboxed page)", func(*harness) map[string]string {
			return map[string]string{"Origin": "null"}
		}, http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.put(t, "a@example.com", "Subject: x\r\n", "b@example.org")
			before := h.snapshot(t)
			resp, body := h.request(t, "POST", "/actions", "admin", adminPass,
				url.Values{"verb": {"hold"}, "id": {id}, "back": {"/queue"}}, c.headers(h))
			if resp.StatusCode != c.want {
				t.Fatalf("POST: %s, want %d\n%s", resp.Status, c.want, body)
			}
			held := h.message(t, id).Recipients[0].State == queue.StateHold
			switch c.want {
			case http.StatusSeeOther:
				if !held {
					t.Errorf("303 but the message was not held")
				}
			default:
				if after := h.snapshot(t); after != before {
					t.Errorf("refused request changed the queue:\nbefore %s\nafter  %s", before, after)
				}
				if !strings.Contains(h.log.String(), "refused a cross-origin request") {
					t.Errorf("the refusal is not logged")
				}
			}
		})
	}
}

func TestReadOnly_403OnEveryPost(t *testing.T) {
	h := newHarness(t)
	id := h.put(t, "a@example.com", "Subject: x\r\n", "b@example.org")
	h.deferMsg(t, id, queue.Attempt{At: time.Now(), Code: 451, Text: "later"})
	before := h.snapshot(t)
	for _, v := range admin.Verbs {
		for _, form := range []url.Values{
			{"verb": {string(v)}, "id": {id}},
			{"verb": {string(v)}, "id": {id}, "confirmed": {"yes"}},
		} {
			resp, _ := h.request(t, "POST", "/actions", "viewer", viewerPass, form, h.sameOrigin())
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("read-only %s: %s, want 403", v, resp.Status)
			}
		}
	}
	for _, path := range []string{"/", "/queue", "/check", "/queue/" + id} {
		resp, _ := h.request(t, "POST", path, "viewer", viewerPass, url.Values{}, h.sameOrigin())
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("read-only POST %s: %s, want 403", path, resp.Status)
		}
	}
	if after := h.snapshot(t); after != before {
		t.Errorf("a read-only user changed the queue")
	}
	if h.kicks.Load() != 0 {
		t.Errorf("a read-only user woke the scheduler")
	}
	// The pages show no action to a read-only user, and all of them to the admin.
	resp, page := h.request(t, "GET", "/queue", "viewer", viewerPass, nil, nil)
	if resp.StatusCode != 200 || strings.Contains(page, `name="verb"`) || strings.Contains(page, `type="checkbox"`) {
		t.Errorf("queue page of a read-only user offers actions (%s)", resp.Status)
	}
	_, page = h.request(t, "GET", "/queue/"+id, "viewer", viewerPass, nil, nil)
	if strings.Contains(page, `name="verb"`) {
		t.Errorf("message page of a read-only user offers actions")
	}
	if page := h.get(t, "/queue"); !strings.Contains(page, `value="retry"`) || !strings.Contains(page, `type="checkbox"`) {
		t.Errorf("queue page of the admin offers no actions")
	}
}

// TestActions_ChangeTheQueueAndRedirect: every verb through the form, on a real store, answered 303 to the page
// it came from with the result, logged with the web user's name.
func TestActions_ChangeTheQueueAndRedirect(t *testing.T) {
	h := newHarness(t)
	a := h.put(t, "a@example.com", "Subject: a\r\n", "x@example.org")
	b := h.put(t, "b@example.com", "Subject: b\r\n", "y@example.org", "z@example.net")
	c := h.put(t, "c@example.com", "Subject: c\r\n", "w@example.org")
	for _, id := range []string{a, b, c} {
		h.deferMsg(t, id, queue.Attempt{At: time.Now(), Route: "direct", Code: 451, Enhanced: "4.7.1", Text: "later"})
	}
	back := "/queue?state=deferred"
	act := func(verb string, confirmed bool, ids ...string) *http.Response {
		t.Helper()
		form := url.Values{"verb": {verb}, "id": ids, "back": {back}}
		if confirmed {
			form.Set("confirmed", "yes")
		}
		resp, body := h.post(t, form)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %s\n%s", verb, resp.Status, body)
		}
		return resp
	}

	resp := act("hold", false, a, b)
	if loc := resp.Header.Get("Location"); loc != "/queue?did=hold&n=2&state=deferred" {
		t.Errorf("hold redirects to %q", loc)
	}
	for _, id := range []string{a, b} {
		if st := h.message(t, id).Recipients[0].State; st != queue.StateHold {
			t.Errorf("after hold %s is %s", id, st)
		}
	}
	if page := h.get(t, "/queue?did=hold&n=2"); !strings.Contains(page, "Held: 2 messages.") {
		t.Errorf("the queue page does not say what the action did")
	}

	kicks := h.kicks.Load()
	act("release", false, a)
	if r := h.message(t, a).Recipients[0]; r.State != queue.StateDeferred || r.NextAttempt.After(time.Now()) {
		t.Errorf("after release: %s, next %v; want deferred and due", r.State, r.NextAttempt)
	}
	if h.kicks.Load() == kicks {
		t.Errorf("release did not wake the scheduler")
	}

	act("retry", false, c)
	if r := h.message(t, c).Recipients[0]; r.NextAttempt.After(time.Now()) {
		t.Errorf("after retry the next attempt is still %v", r.NextAttempt)
	}

	// Bounce and delete ask first: the first POST changes nothing and answers the confirmation page.
	before := h.snapshot(t)
	for _, verb := range []string{"bounce", "delete"} {
		resp, body := h.post(t, url.Values{"verb": {verb}, "id": {b}, "back": {back}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="confirmed" value="yes"`) {
			t.Fatalf("%s without confirmation: %s\n%s", verb, resp.Status, body)
		}
		if !strings.Contains(body, b) || !strings.Contains(body, "y@example.org") {
			t.Errorf("%s confirmation does not show the message", verb)
		}
	}
	if h.snapshot(t) != before {
		t.Fatalf("asking for confirmation changed the queue")
	}
	act("bounce", true, b)
	for _, r := range h.message(t, b).Recipients {
		if !r.BounceNow {
			t.Errorf("after bounce %s is not marked to bounce", r.Addr)
		}
	}
	// From a message's page, delete returns to the listing (the page is gone).
	resp, _ = h.post(t, url.Values{"verb": {"delete"}, "id": {a}, "back": {"/queue/" + a}, "confirmed": {"yes"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue?did=delete&n=1" {
		t.Errorf("delete: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if _, err := h.store.Get(a); err == nil {
		t.Errorf("after delete %s is still queued", a)
	}
	// A message that left meanwhile is said so, not an error.
	resp = act("retry", false, a, c)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "gone=1") || !strings.Contains(loc, "n=1") {
		t.Errorf("retry of a gone and a present message redirects to %q", loc)
	}
	// Nothing ticked: back with a word, nothing done.
	resp, _ = h.post(t, url.Values{"verb": {"hold"}, "back": {back}})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "none=1") {
		t.Errorf("no selection: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	log := h.log.String()
	for _, verb := range []string{"hold", "release", "retry", "bounce", "delete"} {
		if !strings.Contains(log, `msg="queue `+verb+`"`) {
			t.Errorf("%s is not logged", verb)
		}
	}
	if strings.Count(log, "web_user=admin") < 5 {
		t.Errorf("actions are not logged with the web user's name:\n%s", log)
	}
}

func TestActions_RefuseBadForms(t *testing.T) {
	h := newHarness(t)
	id := h.put(t, "a@example.com", "Subject: x\r\n", "b@example.org")
	before := h.snapshot(t)
	for name, form := range map[string]url.Values{
		"unknown verb":    {"verb": {"compact"}, "id": {id}},
		"no verb":         {"id": {id}},
		"not an ID":       {"verb": {"hold"}, "id": {"../../etc/passwd"}},
		"too many":        {"verb": {"hold"}, "id": slices.Repeat([]string{id}, maxActionIDs+1)},
		"ID with a space": {"verb": {"hold"}, "id": {id + " "}},
	} {
		resp, _ := h.post(t, form)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", name, resp.Status)
		}
	}
	resp, _ := h.request(t, "GET", "/actions?verb=hold&id="+id, "admin", adminPass, nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /actions: %s, want 405 or 404", resp.Status)
	}
	if h.snapshot(t) != before {
		t.Errorf("a refused form changed the queue")
	}
}

func TestSafeBack_StaysInTheConsole(t *testing.T) {
	for in, want := range map[string]string{
		"/queue?state=hold&domain=example.org": "/queue?domain=example.org&state=hold",
		"/queue?did=hold&n=3&state=hold":       "/queue?state=hold",
		"/":                                    "/",
		"/queue/6C4WXTEFHRC00":                 "/queue/6C4WXTEFHRC00",
		"//evil.example/queue":                 "/queue",
		"https://evil.example/":                "/queue",
		"/\\evil.example":                      "/queue",
		"/queue/../../x":                       "/queue",
		"/check":                               "/queue",
		"":                                     "/queue",
		"javascript:alert(1)":                  "/queue",
		"/queue\r\nSet-Cookie: x=1":            "/queue",
	} {
		if got := safeBack(in); got != want {
			t.Errorf("safeBack(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0: "just now", 3 * time.Second: "just now", 45 * time.Second: "45 s ago", 12 * time.Minute: "12 min ago",
		3*time.Hour + 59*time.Minute: "3 h ago", 47 * time.Hour: "47 h ago", 50 * time.Hour: "2 d ago",
		-5 * time.Minute: "in 5 min", -26 * time.Hour: "in 26 h",
	} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
}
