package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"ptrelay/config"
)

// On loopback without [[web.users]] the console needs no login, acts as the user "local", and still refuses
// another site's forms; a request naming another host (a DNS-rebinding page) is refused whatever it asks.
func TestLocal_NoUsersOnLoopback(t *testing.T) {
	h := newHarnessWith(t, nil, "127.0.0.1:8025")
	id := h.put(t, "a@example.com", "Subject: held\r\n", "b@example.org")

	resp, body := h.request(t, "GET", "/queue", "", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, id) {
		t.Fatalf("GET /queue without credentials: %s\n%s", resp.Status, body)
	}
	form := url.Values{"verb": {"hold"}, "id": {id}, "back": {"/queue"}}
	if resp, body := h.request(t, "POST", "/actions", "", "", form, h.sameOrigin()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("hold from the console's page: %s\n%s", resp.Status, body)
	}
	if st := h.message(t, id).Recipients[0].State; st != "hold" {
		t.Fatalf("state after hold = %s", st)
	}
	if !strings.Contains(h.log.String(), "web_user=local") {
		t.Errorf("the action is not logged as the local user:\n%s", h.log.String())
	}
	cross := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
	if resp, _ := h.request(t, "POST", "/actions", "", "", url.Values{"verb": {"release"}, "id": {id}}, cross); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %s, want 403", resp.Status)
	}

	for _, host := range []string{"evil.example", "evil.example:8025", "127.0.0.1.evil.example", "192.168.1.20:8025"} {
		req, err := http.NewRequest("GET", h.ts.URL+"/queue", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %q: %s, want 403", host, resp.Status)
		}
	}
	for _, host := range []string{"localhost:8025", "127.0.0.1", "[::1]:8025", "LOCALHOST"} {
		req, err := http.NewRequest("GET", h.ts.URL+"/queue", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: %s, want 200", host, resp.Status)
		}
	}
}

// Off loopback the console never runs without users, whatever the configuration check let through.
func TestLocal_UsersRequiredElsewhere(t *testing.T) {
	h := newHarness(t)
	if _, err := New(nil, Options{Service: h.srv.svc, Listen: "192.168.1.20:8443"}); err == nil {
		t.Fatal("New without users on a LAN address succeeded")
	}
	if err := h.srv.SetUsers([]config.WebUser{}); err == nil {
		t.Fatal("a reload to no users succeeded on a console with logins and no listener rules")
	}
	if resp, _ := h.request(t, "GET", "/queue", "", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET without credentials: %s, want 401", resp.Status)
	}
}
