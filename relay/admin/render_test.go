package admin

import (
	"os"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
)

func TestMain(m *testing.M) {
	// RenderShow and RenderStatus print local time; pin the zone so the expected text does not depend on the host.
	time.Local = time.UTC
	if addr := os.Getenv(helperEnv); addr != "" {
		os.Exit(helperClient(addr))
	}
	os.Exit(m.Run())
}

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func fixture() []*queue.Message {
	return []*queue.Message{
		{
			ID: "0ABCDEFGH1234", Arrival: t0.Add(-2 * time.Hour), Size: 2048,
			Envelope: queue.Envelope{From: "alice@example.com", BodyType: "8BITMIME", ClientAddr: "192.0.2.10:53211",
				ClientHelo: "exchange.corp.example", AuthUser: "exchange", Session: "S7", Ret: "HDRS", EnvID: "e1"},
			Recipients: []queue.Recipient{
				{Addr: "bob@example.org", State: queue.StateDeferred, Attempts: 2, NextAttempt: t0.Add(10 * time.Minute),
					Notify: []string{"FAILURE", "DELAY"},
					History: []queue.Attempt{
						{At: t0.Add(-2 * time.Hour), Route: "direct", Relay: "mx.example.org[192.0.2.1]:25", Code: 451,
							Enhanced: "4.7.1", Text: "Greylisted, try again later", Outcome: "deferred"},
						{At: t0.Add(-time.Hour), Route: "smarthost", Relay: "smtp.isp.example[198.51.100.7]:587", Code: 421,
							Enhanced: "4.4.2", Text: "Too busy\nsecond line", Outcome: "deferred"},
					}},
				{Addr: "carol@example.net", State: queue.StateHold, HeldFrom: queue.StateQueued},
				{Addr: "dave@example.net", State: queue.StateDelivered, Attempts: 1,
					History: []queue.Attempt{{At: t0.Add(-2 * time.Hour), Route: "direct", Relay: "mx.example.net[192.0.2.9]:25",
						Code: 250, Enhanced: "2.0.0", Text: "Ok", Outcome: "sent"}}},
			},
		},
		{
			ID: "0ABCDEFGH5678", Arrival: t0.Add(-time.Minute), Size: 100,
			Recipients: []queue.Recipient{{Addr: "erin@example.com", State: queue.StateQueued}},
		},
	}
}

func TestRenderList(t *testing.T) {
	var b strings.Builder
	corrupt := []queue.CorruptRecord{{Key: "0ZZZZZZZZZZZZ", Reason: "invalid character\n'x'", At: t0.Add(-time.Hour)}}
	if err := RenderList(&b, fixture(), corrupt, t0); err != nil {
		t.Fatal(err)
	}
	want := `-Queue ID-     --Size--  ----Arrival Time---  -Sender/Recipient-------
0ABCDEFGH1234      2048  2026-11-27 01:00:00  alice@example.com
  deferred  bob@example.org  (2 attempts, next 2026-11-27 03:10:00, in 10m0s)
            421 4.4.2 Too busy second line [smarthost smtp.isp.example[198.51.100.7]:587]
  hold      carol@example.net  (held from queued)
  delivered dave@example.net  (1 attempt)
            250 2.0.0 Ok [direct mx.example.net[192.0.2.9]:25]
0ABCDEFGH5678       100  2026-11-27 02:59:00  <>
  queued    erin@example.com  (due now)
-- 3 Kbytes in 2 messages, 4 recipients: 1 queued, 0 active, 1 deferred, 1 hold, 1 delivered.

Corrupt records (quarantined, never delivered; the queue could not decode them):
  0ZZZZZZZZZZZZ  quarantined 2026-11-27 02:00:00  invalid character 'x'
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderList_Empty(t *testing.T) {
	var b strings.Builder
	if err := RenderList(&b, nil, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "Mail queue is empty\n" {
		t.Errorf("got %q", got)
	}
}

func TestRenderShow(t *testing.T) {
	m := fixture()[0]
	body := "Received: from exchange.corp.example\r\n\tby relay.example.com; Thu, 27 Nov 2026 01:00:00 +0000\r\n" +
		"Subject: hello\r\n\r\nfirst body line\r\nsecond\r\n"
	wantHead := `Message:    0ABCDEFGH1234
Arrival:    2026-11-27 01:00:00 UTC
Size:       2048 bytes
Sender:     alice@example.com
Client:     192.0.2.10:53211 helo=exchange.corp.example auth=exchange session=S7
Options:    BODY=8BITMIME RET=HDRS ENVID=e1

Headers:
  Received: from exchange.corp.example
  	by relay.example.com; Thu, 27 Nov 2026 01:00:00 +0000
  Subject: hello

Recipients:
  <bob@example.org>  deferred, 2 attempts, next 2026-11-27 03:10:00 UTC
    NOTIFY=FAILURE,DELAY
    2026-11-27 01:00:00 UTC  direct     deferred  mx.example.org[192.0.2.1]:25
        451 4.7.1 Greylisted, try again later
    2026-11-27 02:00:00 UTC  smarthost  deferred  smtp.isp.example[198.51.100.7]:587
        421 4.4.2 Too busy
        second line
  <carol@example.net>  hold, held from queued
    never tried
  <dave@example.net>  delivered, 1 attempt
    2026-11-27 01:00:00 UTC  direct     sent      mx.example.net[192.0.2.9]:25
        250 2.0.0 Ok
`
	cases := []struct {
		name     string
		showBody bool
		want     string
	}{
		{"headers only", false, wantHead},
		{"with body", true, wantHead + "\nBody:\nfirst body line\nsecond\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			if err := RenderShow(&b, m, strings.NewReader(body), c.showBody); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestRenderShow_HeadersAreBounded(t *testing.T) {
	body := strings.Repeat("X-Junk: a\r\n", 2*maxHeaderLines) + "\r\nbody\r\n"
	var b strings.Builder
	if err := RenderShow(&b, fixture()[1], strings.NewReader(body), false); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "X-Junk"); n != maxHeaderLines {
		t.Errorf("%d header lines shown, want %d", n, maxHeaderLines)
	}
	if !strings.Contains(b.String(), "more headers not shown") {
		t.Error("the cut is not marked")
	}
}

func TestRenderShow_NoBlankLineNoBody(t *testing.T) {
	var b strings.Builder
	if err := RenderShow(&b, fixture()[1], strings.NewReader("Subject: only headers"), true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Headers:\n  Subject: only headers\n") || !strings.HasSuffix(b.String(), "Body:\n") {
		t.Errorf("got:\n%s", b.String())
	}
	b.Reset()
	if err := RenderShow(&b, fixture()[1], nil, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Headers:") || strings.Contains(b.String(), "Body:") {
		t.Errorf("nil body still printed headers or body:\n%s", b.String())
	}
}

func TestRenderStatus(t *testing.T) {
	st := Status{
		Version:   "0.1.0",
		Started:   t0.Add(-26 * time.Hour),
		Listeners: []string{"127.0.0.1:2525", "[::1]:2525"},
		Egress: []EgressStatus{
			{Family: "ipv4", IP: "203.0.113.5", Verdict: "direct-ok", Checked: t0.Add(-5 * time.Minute)},
			{Family: "ipv6", Verdict: "smarthost", Reasons: []string{"no PTR record for 2001:db8::5", "listed in\nPBL"}},
		},
		Queue: queue.Stats{Messages: 2, ByState: map[queue.State]int{queue.StateQueued: 1, queue.StateDeferred: 2,
			queue.StateBounced: 1}, OldestArrival: t0.Add(-90 * time.Minute), Corrupt: 1},
		LastErrors: []LastError{{At: t0.Add(-time.Minute), ID: "0ABCDEFGH1234", Rcpt: "bob@example.org",
			Reply: "451 4.7.1 Greylisted"}},
	}
	st.SetDurations(t0)
	var b strings.Builder
	if err := RenderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	want := `Version:       0.1.0
Running since: 2026-11-26 01:00:00 UTC (up 26h0m0s)
Listening:     127.0.0.1:2525, [::1]:2525
Egress ipv4:   203.0.113.5  direct-ok  (checked 2026-11-27 02:55:00 UTC)
Egress ipv6:   (not found)  smarthost
                 - no PTR record for 2001:db8::5
                 - listed in PBL
Queue:         2 messages; recipients: 1 queued, 0 active, 2 deferred, 0 hold, 1 bounced; oldest 1h30m0s
Corrupt:       1 record quarantined: see ptrelay queue list
Last errors:
  2026-11-27 02:59:00 UTC  0ABCDEFGH1234  <bob@example.org>  451 4.7.1 Greylisted
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	if err := RenderStatus(&b, Status{Version: "0.1.0"}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "Version:       0.1.0\nQueue:         empty\n" {
		t.Errorf("offline status: %q", got)
	}
}

func TestRecentErrors(t *testing.T) {
	r := NewRecentErrors(3)
	if got := r.List(); len(got) != 0 {
		t.Fatalf("new ring holds %v", got)
	}
	for i := range 5 {
		r.Add(LastError{ID: string(rune('a' + i))})
	}
	var ids []string
	for _, e := range r.List() {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, "") != "edc" {
		t.Errorf("newest first: got %v, want e d c", ids)
	}
}

func TestRenderStatus_Certificate(t *testing.T) {
	st := Status{Version: "0.1.0", Certificate: &Certificate{File: "/var/lib/ptrelay/inbound-tls-cert.pem",
		SelfSigned: true, Names: []string{"relay.example.lan", "192.168.1.20"}, NotAfter: t0.AddDate(10, 0, 0)}}
	var b strings.Builder
	if err := RenderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	want := `Version:       0.1.0
Certificate:   relay.example.lan, 192.168.1.20
               self-signed (tls_cert = "auto"), expires 2036-11-27, /var/lib/ptrelay/inbound-tls-cert.pem
Queue:         empty
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderStatus_PendingRestart(t *testing.T) {
	var b strings.Builder
	if err := RenderStatus(&b, Status{Version: "0.1.0", PendingRestart: []string{"smtp.listen", "dns.resolvers"}}); err != nil {
		t.Fatal(err)
	}
	want := "Pending:       smtp.listen, dns.resolvers changed by a reload: restart ptrelay to apply (systemctl restart ptrelay)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("got:\n%s\nwant a line:\n%s", b.String(), want)
	}
}

// TestRenderStatus_Smarthosts: a line per smart host, in the list's order: its state, its budgets as used/limit
// per window, its sessions, and its last error.
func TestRenderStatus_Smarthosts(t *testing.T) {
	st := Status{Version: "0.1.0", Smarthosts: []SmarthostStatus{
		{Name: "m365", Address: "smtp.office365.com:587", State: "up", Sessions: 2, MaxSessions: 3, Budgets: []Budget{
			{Kind: "rcpt", Window: WindowName(24 * time.Hour), Used: 7412, Limit: 10000},
			{Kind: "msg", Window: WindowName(time.Minute), Used: 12, Limit: 30}}},
		{Name: "isp", Address: "smtp.isp.example:587", State: "down", Since: t0.Add(-2 * time.Minute),
			DownUntil: t0.Add(4 * time.Minute), LastError: "4.4.1 connect failed: connection refused",
			LastErrorAt: t0.Add(-time.Minute), MaxSessions: 5},
		{Name: "gws", State: "limited", LimitedUntil: t0.Add(time.Hour), MaxSessions: 1,
			Budgets: []Budget{{Kind: "msg", Window: "24h", Used: 10000, Limit: 10000}}},
	}}
	var b strings.Builder
	if err := RenderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	want := `Smart hosts:
  m365: up; 7,412/10,000 rcpt 24h, 12/30 msg 1m; 2/3 sessions
  isp: down since 2026-11-27 02:58:00 UTC, next try 03:04:00 UTC; 0/5 sessions
       last error 2026-11-27 02:59:00 UTC: 4.4.1 connect failed: connection refused
  gws: limited until 2026-11-27 04:00:00 UTC; 10,000/10,000 msg 24h; 0/1 session
`
	if got := b.String(); !strings.Contains(got, want) {
		t.Errorf("status:\n%s\nwant the lines:\n%s", got, want)
	}
	if thousands(1234567) != "1,234,567" || thousands(999) != "999" || thousands(-1000) != "-1,000" {
		t.Errorf("thousands: %s %s %s", thousands(1234567), thousands(999), thousands(-1000))
	}
	for d, want := range map[time.Duration]string{time.Second: "1s", time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "24h", 90 * time.Second: "90s"} {
		if got := WindowName(d); got != want {
			t.Errorf("WindowName(%v) = %s, want %s", d, got, want)
		}
	}
}

// queue show says what DKIM signing will do, from the header section as stored (folded lines included).
func TestRenderShow_SigningLine(t *testing.T) {
	var seen string
	var b strings.Builder
	body := "From: Alice\r\n <alice@contoso.test>\r\nSubject: s\r\n\r\nbody\r\n"
	err := RenderShowWith(&b, fixture()[1], strings.NewReader(body), ShowOptions{Signing: func(h []byte) string {
		seen = string(h)
		return "will be signed with d=contoso.test s=ptr2026a when sent"
	}})
	if err != nil {
		t.Fatal(err)
	}
	if seen != "From: Alice\r\n <alice@contoso.test>\r\nSubject: s\r\n\r\n" {
		t.Errorf("the signing function saw %q", seen)
	}
	if !strings.Contains(b.String(), "  Subject: s\n\nDKIM:       will be signed with d=contoso.test s=ptr2026a when sent\n\nRecipients:") {
		t.Errorf("got:\n%s", b.String())
	}
}
