package alerts

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func listingNotice() Notice {
	c := Listing("zen.spamhaus.org", "203.0.113.7", "127.0.0.4", "XBL: exploited or infected host", false,
		"Send through the smart host, find and fix the cause, then request removal at the operator of zen.spamhaus.org.",
		Route{Smarthost: "smtp.isp.example", Mode: "auto", Reroute: true})
	return Notice{ID: "msg_abc", Key: c.Key(), Event: c.Event, Subject: c.Subject, Kind: KindFired, Status: StatusFiring,
		Severity: c.Severity, Summary: c.Summary, What: c.What, Doing: c.Doing, Fix: c.Fix, Details: c.Details,
		Since: t0.Add(-12 * time.Minute), At: t0}
}

func TestRenderMail_ReadsRight(t *testing.T) {
	q := QueueOldest(QueueFacts{Oldest: 150 * time.Minute, Deferred: 12, Messages: 9, Lifetime: 5 * 24 * time.Hour,
		LastReply: []string{"451 4.7.1 try later\r\nBcc: injected"}}, 2*time.Hour)
	second := Notice{ID: "msg_q", Key: q.Key(), Event: q.Event, Kind: KindReminder, Status: StatusFiring, Severity: q.Severity,
		Summary: q.Summary, What: q.What, Doing: q.Doing, Fix: q.Fix, Since: t0.Add(-26 * time.Hour), At: t0}
	msg := renderMail([]Notice{listingNotice(), second}, "relay.example.com", []string{"it@contoso.com", "boss@contoso.com"}, t0, time.UTC)

	if bytes.Contains(bytes.ReplaceAll(msg.Data, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a bare LF in the mail")
	}
	for _, l := range strings.Split(string(msg.Data), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line longer than RFC 5322 allows: %d", len(l))
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	for k, want := range map[string]string{
		"From":                     `"ptrelay on relay.example.com" <ptrelay@relay.example.com>`,
		"To":                       "it@contoso.com, boss@contoso.com",
		"Subject":                  "ptrelay: 203.0.113.7 is listed in zen.spamhaus.org (XBL: exploited or infected host) (and 1 more)",
		"Auto-Submitted":           "auto-generated",
		"X-Ptrelay-Alert":          "1",
		"X-Auto-Response-Suppress": "All",
		"Message-ID":               "<abc@relay.example.com>",
		"Content-Type":             "text/plain; charset=utf-8",
	} {
		got := h.Get(k)
		if k == "From" {
			if a, err := mail.ParseAddress(got); err != nil || a.Address != "ptrelay@relay.example.com" {
				t.Errorf("From: %q (%v)", got, err)
			}
			continue
		}
		if got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	body := string(msg.Data[bytes.Index(msg.Data, []byte("\r\n\r\n")):])
	for _, want := range []string{
		"2 notices from ptrelay on relay.example.com, most severe first.",
		"[CRIT] 203.0.113.7 is listed in zen.spamhaus.org (XBL: exploited or infected host)",
		"Since 2026-12-02 09:48 UTC (12 min).",
		"What happened: zen.spamhaus.org answers 127.0.0.4 for 203.0.113.7",
		"What ptrelay does: Mail goes through the smart host smtp.isp.example until the listing is gone",
		"What to do: Send through the smart host, find and fix the cause",
		"[WARN] still: mail has been waiting 2h30m in the queue (12 deferred recipients)",
		"`ptrelay status`",
	} {
		if !strings.Contains(strings.Join(strings.Fields(body), " "), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	// A remote reply with a line break cannot add a header or a line of its own.
	if strings.Contains(body, "\r\nBcc: injected") {
		t.Errorf("outside text broke the line:\n%s", body)
	}
}

func TestRenderMail_ResolvedAndNonASCII(t *testing.T) {
	n := listingNotice()
	n.Kind, n.Status, n.Summary, n.Fix, n.Doing, n.What = KindResolved, StatusResolved, "203.0.113.7 is no longer listed in zen.spamhaus.org", "", "", "It held 12 min."
	msg := renderMail([]Notice{n}, "relais.exemple.fr", []string{"it@exemple.fr"}, t0, time.UTC)
	m, _ := mail.ReadMessage(bytes.NewReader(msg.Data))
	if got := m.Header.Get("Subject"); got != "ptrelay: resolved: 203.0.113.7 is no longer listed in zen.spamhaus.org" {
		t.Errorf("subject %q", got)
	}
	if !strings.Contains(string(msg.Data), "[RESOLVED] 203.0.113.7") || strings.Contains(string(msg.Data), "What to do") {
		t.Errorf("resolved mail:\n%s", msg.Data)
	}
	n.Summary = "disque plein à 95 %"
	msg = renderMail([]Notice{n}, "relais.exemple.fr", []string{"it@exemple.fr"}, t0, time.UTC)
	m, _ = mail.ReadMessage(bytes.NewReader(msg.Data))
	dec := new(mimeDecoder)
	if s, err := dec.DecodeHeader(m.Header.Get("Subject")); err != nil || !strings.Contains(s, "disque plein à 95 %") ||
		m.Header.Get("Content-Transfer-Encoding") != "8bit" {
		t.Errorf("non-ASCII subject %q / %q (%v)", m.Header.Get("Subject"), s, err)
	}
}

func TestRenderPayload(t *testing.T) {
	b := renderPayload(listingNotice(), "relay.example.com")
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	data := p["data"].(map[string]any)
	details := data["details"].(map[string]any)
	if p["type"] != "ptrelay.listed" || p["timestamp"] != "2026-12-02T10:00:00Z" || data["status"] != "firing" ||
		data["severity"] != "crit" || data["host"] != "relay.example.com" || data["since"] != "2026-12-02T09:48:00Z" ||
		details["zone"] != "zen.spamhaus.org" || details["ip"] != "203.0.113.7" || details["codes"] != "127.0.0.4" ||
		details["kind"] != "fired" || !strings.HasPrefix(p["text"].(string), "[ptrelay] CRIT relay.example.com: 203.0.113.7 is listed") {
		t.Errorf("payload:\n%s", b)
	}
	for _, k := range []string{"type", "timestamp", "data", "text"} {
		if _, ok := p[k]; !ok {
			t.Errorf("payload lacks %q", k)
		}
	}
}

// Words from outside are cleaned, clipped and never more than three names.
func TestWords_OutsideTextIsCleaned(t *testing.T) {
	c := InboundAuth("192.0.2.50", 9, 10*time.Minute, []string{"exchange\r\nX-Evil: 1", "b", "c", "d"})
	if strings.ContainsAny(c.Summary+c.What, "\r\n") || strings.Contains(c.Summary, `"d"`) ||
		!strings.Contains(c.Summary, `"exchange X-Evil: 1", "b", "c"`) {
		t.Errorf("summary %q", c.Summary)
	}
	if got := clean(strings.Repeat("x", 300), 10); got != "xxxxxxxxxx…" {
		t.Errorf("clip: %q", got)
	}
	a := SmarthostAuth("m365", "535 5.7.3 Authentication unsuccessful")
	b := SmarthostAuth("m365", "550 5.7.30 Basic authentication is not supported for Client Submission.")
	if strings.Contains(a.Fix, "xoauth2") || !strings.Contains(b.Fix, `auth = "xoauth2"`) {
		t.Errorf("fixes: %q / %q", a.Fix, b.Fix)
	}
}

func TestWords_Route(t *testing.T) {
	for _, c := range []struct {
		r    Route
		sev  Severity
		word string
	}{
		{Route{Smarthost: "sh", Mode: "auto"}, Warn, "Mail goes through the smart host sh"},
		{Route{Mode: "direct"}, Crit, "No smart host is configured"},
		{Route{Smarthost: "sh", Mode: "direct", Reroute: true}, Warn, "gets it through the smart host sh instead"},
		{Route{Smarthost: "sh", Mode: "direct"}, Crit, "receivers will likely refuse"},
		{Route{Smarthost: "sh", Mode: "smarthost"}, Info, "deliveries are not affected"},
	} {
		v := Verdict("ipv4", "192.0.2.7", []Finding{{Title: "PTR record of 192.0.2.7", Detail: "no PTR record for 192.0.2.7", Fix: "Ask your ISP."}}, c.r)
		if v.Severity != c.sev || !strings.Contains(v.Doing, c.word) || v.Fix != "Ask your ISP." {
			t.Errorf("%+v: severity %v doing %q", c.r, v.Severity, v.Doing)
		}
	}
	v := Verdict("ipv4", "192.0.2.7", []Finding{{Detail: "no PTR record for 192.0.2.7"}}, Route{Smarthost: "smtp.isp.example", Mode: "auto"})
	if v.Summary != "mail now goes through the smart host smtp.isp.example: no PTR record for 192.0.2.7" {
		t.Errorf("summary %q", v.Summary)
	}
}

func TestExpiryStage(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		left  time.Duration
		stage string
		sev   Severity
		ok    bool
	}{
		{30 * day, "", 0, false}, {21*day + time.Hour, "", 0, false}, {21 * day, "21 days", Warn, true},
		{8 * day, "21 days", Warn, true}, {7 * day, "7 days", Crit, true}, {25 * time.Hour, "7 days", Crit, true},
		{day, "24h", Crit, true}, {time.Minute, "24h", Crit, true}, {0, "expired", Crit, true}, {-day, "expired", Crit, true},
	} {
		stage, sev, ok := expiryStage(t0.Add(c.left), t0, CertStages)
		if stage != c.stage || sev != c.sev || ok != c.ok {
			t.Errorf("%v left: %q %v %v, want %q %v %v", c.left, stage, sev, ok, c.stage, c.sev, c.ok)
		}
	}
	if c, ok := SecretExpiring("m365", t0.Add(29*day), t0); !ok || c.Severity != Warn || !strings.Contains(c.Summary, "expires in 29 days") {
		t.Errorf("secret 29 days: %+v %v", c, ok)
	}
}

type mimeDecoder = mime.WordDecoder
