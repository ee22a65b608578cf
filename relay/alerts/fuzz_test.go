package alerts

import (
	"bytes"
	"encoding/json"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzRenderNotice feeds text from outside (a remote server's reply, a user name a client typed, a block
// list's answer) through the words into the alert mail and the webhook payload: whatever it holds, the mail
// keeps its header set (no header injection), uses CRLF only, keeps lines within RFC 5322's limit, and the
// payload stays valid JSON.
func FuzzRenderNotice(f *testing.F) {
	f.Add("451 4.7.1 try later", "exchange", "listed")
	f.Add("550 x\r\nBcc: victim@example.org\r\n\r\nbody", "user\nX-Evil: 1", "PBL\r\n.\r\n")
	f.Add(strings.Repeat("é", 2000), "\x00\x1b[31m", "")
	f.Fuzz(func(t *testing.T, reply, user, meaning string) {
		conds := []Condition{
			QueueOldest(QueueFacts{Oldest: 3 * time.Hour, Deferred: 2, Messages: 1, Lifetime: 120 * time.Hour, LastReply: []string{reply}}, 2*time.Hour),
			InboundAuth("192.0.2.1", 6, 10*time.Minute, []string{user}),
			Listing("bl.test", "192.0.2.7", "127.0.0.2", meaning, false, "fix it", Route{Smarthost: "sh", Mode: "auto"}),
			SmarthostAuth(user, reply),
			TLSPolicy("example.org", "MTA-STS", reply, 3),
		}
		var ns []Notice
		for i, c := range conds {
			ns = append(ns, Notice{ID: "msg_" + itoa(i), Key: c.Key(), Event: c.Event, Kind: KindFired, Status: StatusFiring,
				Severity: c.Severity, Summary: c.Summary, What: c.What, Doing: c.Doing, Fix: c.Fix, Details: c.Details, Since: t0, At: t0})
		}
		msg := renderMail(ns, "relay.test", []string{"it@contoso.test"}, t0, time.UTC)
		if bytes.Contains(bytes.ReplaceAll(msg.Data, []byte("\r\n"), nil), []byte("\n")) ||
			bytes.Contains(bytes.ReplaceAll(msg.Data, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatal("a bare CR or LF in the mail")
		}
		for _, l := range bytes.Split(msg.Data, []byte("\r\n")) {
			if len(l) > 998 {
				t.Fatalf("a line of %d bytes", len(l))
			}
		}
		m, err := mail.ReadMessage(bytes.NewReader(msg.Data))
		if err != nil {
			t.Fatalf("the mail does not parse: %v", err)
		}
		var keys []string
		for k := range m.Header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"Auto-Submitted", "Content-Transfer-Encoding", "Content-Type", "Date", "From", "Message-Id",
			"Mime-Version", "Subject", "To", "X-Auto-Response-Suppress", "X-Ptrelay-Alert"}
		if !slices.Equal(keys, want) {
			t.Fatalf("header keys %v", keys)
		}
		for _, n := range ns {
			var p Payload
			if err := json.Unmarshal(renderPayload(n, "relay.test"), &p); err != nil || p.Type != "ptrelay."+string(n.Event) {
				t.Fatalf("payload: %v %+v", err, p)
			}
		}
	})
}
