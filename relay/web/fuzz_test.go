package web

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/admin"
)

// renderAll renders the pages that show outside text (queue, message, confirmation, status) with these values
// in every place a message or a remote server can put text, and returns the pages joined.
func renderAll(t *testing.T, s *Server, sender, header, reply, rcpt string) string {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := &queue.Message{ID: "6C4WXTEFHRC00", Arrival: now.Add(-time.Hour), Size: 1234,
		Envelope: queue.Envelope{From: sender, ClientHelo: header, AuthUser: rcpt, EnvID: reply},
		Recipients: []queue.Recipient{{Addr: rcpt, ORcpt: header, Notify: []string{reply}, State: queue.StateDeferred,
			Attempts: 1, NextAttempt: now.Add(time.Hour), History: []queue.Attempt{{At: now, Route: reply, Relay: header,
				Code: 451, Enhanced: "4.7.1", Text: reply, Outcome: reply}}}}}
	msg := messageData{Message: m, Sender: admin.SenderText(sender), Client: admin.ClientText(m.Envelope),
		Options: admin.OptionsText(m.Envelope), Headers: []string{header}, ShowBody: true, Body: header + "\n" + reply,
		Back: "/queue/" + m.ID, CanAct: true}
	rc := &m.Recipients[0]
	a := rc.History[0]
	av := attemptView{At: a.At, Route: a.Route, Relay: a.Relay, Outcome: a.Outcome, Reply: admin.ReplyText(a), Meaning: meaning(a)}
	msg.Recipients = []recipientView{{Recipient: rc, Notes: reply, DSN: header, History: []attemptView{av}, Last: &av}}
	list := queueData{States: admin.StateOrder(), Form: queueForm{State: reply, Domain: header, Sender: sender, Older: rcpt, Limit: 50},
		Rows: []messageRow{s.row(m, now, true)}, Corrupt: []queue.CorruptRecord{{Key: header, Reason: reply}},
		NextURL: "/queue?" + url.Values{"sender": {sender}}.Encode(), Back: "/queue?" + url.Values{"domain": {header}}.Encode()}
	dash := dashboardData{Status: admin.Status{Version: reply, Listeners: []string{header},
		Egress:         []admin.EgressStatus{{Family: "ipv4", IP: header, Verdict: reply, Reasons: []string{reply}, Fixes: []string{header}, Checked: now}},
		Alerts:         []admin.Alert{{Key: header, Severity: reply, State: reply, Summary: reply, Since: now, Fix: header}},
		LastErrors:     []admin.LastError{{At: now, ID: m.ID, Rcpt: rcpt, Reply: reply}},
		PendingRestart: []string{header},
		Smarthosts:     []admin.SmarthostStatus{{Name: header, Address: rcpt, State: reply, LastError: reply, Budgets: []admin.Budget{{Kind: reply, Window: header}}}},
	}}
	var out bytes.Buffer
	for _, p := range []struct {
		name string
		data any
	}{
		{"message", msg},
		{"queue", list},
		{"confirm", confirmData{Verb: admin.VerbDelete, IDs: []string{m.ID}, Messages: []*queue.Message{m}, Missing: []string{header}, Back: "/queue"}},
		{"dashboard", dash},
		{"error", errorData{Heading: header, Text: reply}},
	} {
		v := view{Frame: frame{Title: header, Nav: "queue", User: User{Name: rcpt}, Zone: "UTC", Notice: &notice{Text: reply}},
			Data: p.data, now: now, loc: time.UTC}
		if err := s.pages[p.name].Execute(&out, v); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	return out.String()
}

// mask replaces every character but white space by an x, keeping which values are empty or blank: the same
// pages with harmless text.
func mask(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return r
		}
		return 'x'
	}, strings.ToValidUTF8(s, "x"))
}

// FuzzRender: whatever a message's sender, recipients and headers or a remote server's reply hold, the pages
// carry exactly the markup they carry for plain text: no value adds a tag (every "<" of the page is the
// template's own).
func FuzzRender(f *testing.F) {
	f.Add("a@example.com", "Subject: hello", "451 4.7.1 try later", "b@example.org")
	f.Add(`"<script>alert(1)</script>"@evil.example`, `X-Evil: </pre><img src=x onerror=alert(2)>`,
		`550 <b>no</b> <!-- -->`, `"</td><svg onload=alert(3)>"@example.org`)
	f.Add("", "", "", "")
	f.Add("\x00<\xff>", "]]><![CDATA[", "javascript:alert(1)", "{{.}}")
	s, err := New(nil, Options{Service: admin.NewService(nil, nil, nil, nil)})
	if err == nil || s != nil {
		f.Fatal("New accepted a console without users")
	}
	s, err = New([]config.WebUser{{Name: "a", PasswordHash: hash(f, "x")}}, Options{Service: admin.NewService(nil, nil, nil, nil)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sender, header, reply, rcpt string) {
		got := renderAll(t, s, sender, header, reply, rcpt)
		want := renderAll(t, s, mask(sender), mask(header), mask(reply), mask(rcpt))
		if g, w := strings.Count(got, "<"), strings.Count(want, "<"); g != w {
			t.Fatalf("the pages hold %d '<' with these values and %d with plain text: a value became markup", g, w)
		}
	})
}

// FuzzSafeBack: whatever a form says to return to, the redirect stays a path of the console.
func FuzzSafeBack(f *testing.F) {
	for _, s := range []string{"/queue?state=hold", "//evil.example", "/\\evil", "https://x/", "/queue/6C4WXTEFHRC00",
		"/queue/%2e%2e/x", "/%0d%0aLocation:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, back string) {
		got := safeBack(back)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") ||
			strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("safeBack(%q) = %q: not a path of the console", back, got)
		}
		switch {
		case u.Path == "/", u.Path == "/queue":
		case strings.HasPrefix(u.Path, "/queue/") && queue.ValidID(strings.TrimPrefix(u.Path, "/queue/")):
		default:
			t.Fatalf("safeBack(%q) = %q: not a page of the console", back, got)
		}
	})
}
