package web

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/admin"
)

// hostile is markup an attacker can put in a message: the sender, recipients, header values and the remote
// server's reply all come from outside.
const hostile = `<script>alert(1)</script>`

// TestPages_EscapeHostileValues: every value from outside is text on every page; none becomes markup.
func TestPages_EscapeHostileValues(t *testing.T) {
	h := newHarness(t)
	from := `"<script>alert(1)</script>"@evil.example`
	headers := "Subject: " + hostile + "\r\n" +
		"From: \"x\" <a@b.example>\"><img src=x onerror=alert(2)>\r\n" +
		"X-Evil: </pre><script>alert(3)</script>\r\n"
	id := h.put(t, from, headers, `"</td><script>alert(4)</script>"@example.org`)
	h.deferMsg(t, id, queue.Attempt{At: time.Now(), Route: "direct", Relay: "mx[<b>1</b>]:25", Code: 550,
		Enhanced: "5.7.1", Text: "rejected " + hostile})
	h.status.LastErrors = []admin.LastError{{At: time.Now(), ID: id, Rcpt: "<script>alert(5)</script>", Reply: hostile}}
	h.status.Alerts = []admin.Alert{{Key: "k", Severity: "crit<script>", State: "firing", Summary: hostile, Since: time.Now(), Fix: hostile}}
	h.status.Egress = []admin.EgressStatus{{Family: "ipv4", IP: "192.0.2.1", Verdict: "smarthost",
		Reasons: []string{hostile}, Fixes: []string{hostile}}}

	script := regexp.MustCompile(`(?i)<script|<img|<b>|</td><script`)
	for _, path := range []string{"/", "/queue", "/queue?state=deferred", "/queue/" + id, "/queue/" + id + "?body=1",
		"/queue?sender=" + url.QueryEscape(hostile) + "@x", "/queue?domain=" + url.QueryEscape(hostile)} {
		resp, page := h.request(t, "GET", path, "admin", adminPass, nil, nil)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if m := script.FindString(page); m != "" {
			i := strings.Index(page, m)
			t.Errorf("GET %s: %q reached the page as markup: ...%s...", path, m, page[max(0, i-80):min(len(page), i+80)])
		}
	}
	msg := h.get(t, "/queue/"+id)
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;",
		"&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;", "rejected &lt;script&gt;"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message page lacks the escaped text %q", want)
		}
	}
	// A class name made from outside words keeps to letters.
	if dash := h.get(t, "/"); !strings.Contains(dash, `class="badge sev-critscript"`) {
		t.Errorf("severity class not sanitised")
	}
	resp, _ := h.request(t, "GET", "/queue/"+id+"?body=1", "admin", adminPass, nil, nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestPages_GETNeverChangesAnything: every page, with any query string (even one that names an action), leaves
// the queue as it was and never wakes the scheduler.
func TestPages_GETNeverChangesAnything(t *testing.T) {
	h := newHarness(t)
	a := h.put(t, "a@example.com", "Subject: a\r\n", "x@example.org")
	b := h.put(t, "b@example.com", "Subject: b\r\n", "y@example.org")
	h.deferMsg(t, b, queue.Attempt{At: time.Now(), Code: 451, Text: "later"})
	before := h.snapshot(t)
	for _, path := range []string{"/", "/queue", "/queue?select=all", "/queue?verb=delete&id=" + a,
		"/queue/" + a + "?verb=delete&confirmed=yes", "/queue/" + b + "?body=1", "/check", "/check?run=1",
		"/actions?verb=delete&id=" + a + "&confirmed=yes", "/queue/" + a + "/delete", "/static/style.css"} {
		for _, method := range []string{"GET", "HEAD"} {
			h.request(t, method, path, "admin", adminPass, nil, nil)
		}
	}
	if after := h.snapshot(t); after != before {
		t.Errorf("GET changed the queue:\nbefore %s\nafter  %s", before, after)
	}
	if n := h.kicks.Load(); n != 0 {
		t.Errorf("GET woke the scheduler %d times", n)
	}
}

func TestQueuePage_ColumnsFiltersAndPaging(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.put(t, "s"+string(rune('a'+i))+"@example.com", "Subject: x\r\n", "r@dom"+string(rune('a'+i))+".example"))
	}
	h.deferMsg(t, ids[1], queue.Attempt{At: time.Now(), Route: "smarthost", Relay: "smtp.isp.example[192.0.2.9]:587",
		Code: 451, Enhanced: "4.3.2", Text: "sender thread limit exceeded"})
	page := h.get(t, "/queue")
	for _, id := range ids {
		if !strings.Contains(page, id) {
			t.Errorf("queue page lacks %s", id)
		}
	}
	for _, want := range []string{"451 4.3.2 sender thread limit exceeded", "[smarthost smtp.isp.example[192.0.2.9]:587]",
		"1 attempt", `class="badge state-deferred">deferred`, `class="badge state-queued">queued`, "sb@example.com",
		"All matching messages are on this page."} {
		if !strings.Contains(page, want) {
			t.Errorf("queue page lacks %q", want)
		}
	}

	page = h.get(t, "/queue?state=deferred")
	if !strings.Contains(page, ids[1]) || strings.Contains(page, ids[0]) {
		t.Errorf("state filter: want only %s", ids[1])
	}
	page = h.get(t, "/queue?domain=domc.example")
	if !strings.Contains(page, ids[2]) || strings.Contains(page, ids[1]) {
		t.Errorf("domain filter: want only %s", ids[2])
	}
	page = h.get(t, "/queue?sender=sd%40example.com")
	if !strings.Contains(page, ids[3]) || strings.Contains(page, ids[2]) {
		t.Errorf("sender filter: want only %s", ids[3])
	}
	if page := h.get(t, "/queue?older=1h"); !strings.Contains(page, "No message matches.") {
		t.Errorf("older filter: nothing arrived an hour ago")
	}

	// The CLI's words for what it refuses, with 400.
	for q, want := range map[string]string{
		"state=stuck":  `state &#34;stuck&#34; is not a recipient state`,
		"older=soon":   `older &#34;soon&#34; is not a duration`,
		"limit=0":      `limit &#34;0&#34;: give a number of messages per page from 1 to 500`,
		"sender=bob":   `sender &#34;bob&#34;: give an address`,
		"after=x/../y": `after &#34;x/../y&#34; is not a queue ID`,
	} {
		resp, page := h.request(t, "GET", "/queue?"+q, "admin", adminPass, nil, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, want) {
			t.Errorf("/queue?%s: %s, want 400 with %q", q, resp.Status, want)
		}
	}

	// Paging: two per page, following "Next page" until there is none.
	var seen []string
	next := "/queue?limit=2"
	for range 5 {
		page := h.get(t, next)
		for _, m := range regexp.MustCompile(`id="m-([0-9A-Z]+)"`).FindAllStringSubmatch(page, -1) {
			seen = append(seen, m[1])
		}
		m := regexp.MustCompile(`<a href="([^"]+)">Next page`).FindStringSubmatch(page)
		if m == nil {
			break
		}
		next = strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.Contains(page, "limit=2") && len(seen) > 2 {
			t.Errorf("a later page lost the page size")
		}
	}
	if strings.Join(seen, " ") != strings.Join(ids, " ") {
		t.Errorf("paging showed %v, want %v", seen, ids)
	}
	if page := h.get(t, next); !strings.Contains(page, "First page") {
		t.Errorf("a later page has no way back to the first")
	}

	// "Tick all on this page" ticks every box of the page, for the bulk actions.
	page = h.get(t, "/queue?select=all&limit=3")
	if n := strings.Count(page, `type="checkbox" name="id"`); n != 3 || strings.Count(page, " checked>") != 3 {
		t.Errorf("select=all: %d boxes, %d ticked; want 3 and 3", n, strings.Count(page, " checked>"))
	}
}

func TestMessagePage_HistoryReplyAndBodyOnRequest(t *testing.T) {
	h := newHarness(t)
	id := h.put(t, "", "Subject: quarterly report\r\nFrom: Alice <alice@example.com>\r\n",
		"bob@example.org", "carol@example.net")
	h.deferMsg(t, id, queue.Attempt{At: time.Now().Add(-3 * time.Hour), Route: "direct",
		Relay: "mx.example.org[192.0.2.1]:25", Code: 451, Enhanced: "4.7.1", Text: "greylisted, try again later"})
	page := h.get(t, "/queue/"+id)
	for _, want := range []string{
		"Subject: quarterly report", "From: Alice &lt;alice@example.com&gt;", // headers, escaped
		"&lt;&gt;",                              // the null sender
		"451 4.7.1 greylisted, try again later", // the last reply
		"temporary failure: ptrelay keeps the message and tries again", // what ptrelay made of it
		"3 h ago", "mx.example.org[192.0.2.1]:25", "bob@example.org", "carol@example.net",
		`href="/queue/` + id + `?body=1"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	if strings.Contains(page, "body of the message") {
		t.Errorf("the body is shown without being asked for")
	}
	if page := h.get(t, "/queue/"+id+"?body=1"); !strings.Contains(page, "body of the message") {
		t.Errorf("?body=1 does not show the body")
	}
	resp, page := h.request(t, "GET", "/queue/"+strings.Repeat("7", 13), "admin", adminPass, nil, nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "is not in the queue") {
		t.Errorf("unknown message: %s", resp.Status)
	}
}

func TestDashboard_ShowsTheStatus(t *testing.T) {
	h := newHarness(t)
	id := h.put(t, "a@example.com", "Subject: a\r\n", "x@example.org")
	h.deferMsg(t, id, queue.Attempt{At: time.Now(), Code: 451, Text: "later"})
	h.status.Started = time.Now().Add(-26 * time.Hour)
	h.status.Egress = []admin.EgressStatus{{Family: "ipv4", IP: "203.0.113.7", Verdict: "smarthost", Checked: time.Now(),
		Reasons: []string{"PTR of 203.0.113.7: no PTR record"}, Fixes: []string{"Ask your ISP to set a PTR record."}}}
	h.status.PendingRestart = []string{"web.listen"}
	h.status.Alerts = []admin.Alert{{Key: "queue.oldest", Severity: "warn", State: "firing", Summary: "Mail waits",
		Since: time.Now().Add(-2 * time.Hour), Fix: "Look at the deferred mail."}}
	h.status.LastErrors = []admin.LastError{{At: time.Now(), ID: id, Rcpt: "x@example.org", Reply: "451 4.7.1 later"}}
	page := h.get(t, "/")
	for _, want := range []string{"203.0.113.7", `badge verdict-smarthost">smarthost`, "no PTR record",
		"Fix: Ask your ISP to set a PTR record.", "web.listen", "Mail waits", "Fix: Look at the deferred mail.",
		"451 4.7.1 later", `href="/queue?state=deferred"`, "1 message in the queue", "26 h ago",
		`<meta http-equiv="refresh" content="30">`} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if strings.Contains(page, "Smart hosts") {
		t.Errorf("dashboard shows a smart-host section with none reported")
	}
	h.status.Smarthosts = []admin.SmarthostStatus{{Name: "m365", Address: "smtp.office365.com:587", State: "limited",
		Budgets: []admin.Budget{{Kind: "rcpt", Window: "24h", Used: 7412, Limit: 10000}}}}
	page = h.get(t, "/")
	for _, want := range []string{"Smart hosts", "m365", `host-limited">limited`, "7412/10000 rcpt 24h"} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
}

func TestCheckPage_RunsOnRequest(t *testing.T) {
	h := newHarness(t)
	page := h.get(t, "/check")
	if !strings.Contains(page, "Run the checks") || strings.Contains(page, "Verdict:") {
		t.Errorf("the check page runs the check without being asked")
	}
	resp, page := h.request(t, "GET", "/check?run=1", "viewer", viewerPass, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "Verdict: unknown.") || !strings.Contains(page, "relay.example.com") {
		t.Errorf("check run by a read-only user: %s\n%s", resp.Status, page)
	}
}
