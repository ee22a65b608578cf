package admin

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAdmin_AlertRoutes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv := NewServer(fakeQueue{}, nil, nil, nil)
	want := []Alert{{Key: "listed/bl.test/192.0.2.7", Event: "listed", Subject: "bl.test/192.0.2.7", Severity: "crit",
		State: "firing", Summary: "192.0.2.7 is listed in bl.test", Since: t0, Fix: "request removal"}}
	var tested int
	srv.SetAlerts(func() []Alert { return want }, func(ctx context.Context) []ChannelResult {
		tested++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the test notice runs without a deadline")
		}
		return []ChannelResult{{Channel: "webhook", Outcome: "sent", Detail: "HTTP 204 No Content"}}
	})
	serve(t, srv, sock, "")
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Alerts()
	if err != nil || len(got) != 1 || got[0].Key != want[0].Key || !got[0].Since.Equal(t0) || got[0].Fix != "request removal" {
		t.Fatalf("alerts %+v %v", got, err)
	}
	res, err := c.AlertsTest()
	if err != nil || tested != 1 || len(res) != 1 || res[0] != (ChannelResult{Channel: "webhook", Outcome: "sent", Detail: "HTTP 204 No Content"}) {
		t.Fatalf("alerts test %+v %v (called %d times)", res, err, tested)
	}
	// A server without alert functions answers empty lists.
	sock2 := filepath.Join(t.TempDir(), "admin.sock")
	serve(t, NewServer(fakeQueue{}, nil, nil, nil), sock2, "")
	c2, err := Dial(sock2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := c2.Alerts(); err != nil || len(got) != 0 {
		t.Errorf("alerts without a manager: %+v %v", got, err)
	}
}

func TestRenderAlerts(t *testing.T) {
	var b strings.Builder
	alerts := []Alert{
		{Key: "cert.expiring/smtp.tls_cert", Severity: "crit", State: "firing", Summary: "the certificate expires in 6 days",
			Since: t0, Fix: "Install a renewed certificate."},
		{Key: "dns.failing", Severity: "crit", State: "pending", Summary: "DNS is not\nanswering", Since: t0, FiresAt: t0.Add(10 * time.Minute)},
		{Key: "listed/zen/1", Severity: "info", State: "quiet", Summary: "listed in PBL", Since: t0},
	}
	if err := RenderAlerts(&b, alerts); err != nil {
		t.Fatal(err)
	}
	want := `CRIT  the certificate expires in 6 days (firing; since 2026-11-27 03:00:00 UTC)
  key:   cert.expiring/smtp.tls_cert
  fix:   Install a renewed certificate.

CRIT  DNS is not answering (pending, fires 2026-11-27 03:10:00 UTC if it still holds; since 2026-11-27 03:00:00 UTC)
  key:   dns.failing

INFO  listed in PBL (below min_severity: digest only; since 2026-11-27 03:00:00 UTC)
  key:   listed/zen/1
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	_ = RenderAlerts(&b, nil)
	if b.String() != "No alert condition holds.\n" {
		t.Errorf("empty: %q", b.String())
	}
	b.Reset()
	_ = RenderTestResults(&b, []ChannelResult{{"mail", "queued", "queued as 6C4W"}, {"webhook", "failed", "HTTP 500 Internal Server Error"}})
	if b.String() != "mail:    queued  queued as 6C4W\nwebhook: failed  HTTP 500 Internal Server Error\n" {
		t.Errorf("test results: %q", b.String())
	}
	b.Reset()
	_ = RenderTestResults(&b, nil)
	if !strings.Contains(b.String(), "set alerts.mail_to and/or alerts.webhook_url") {
		t.Errorf("no channels: %q", b.String())
	}
	b.Reset()
	_ = RenderStatus(&b, Status{Version: "1", Alerts: alerts[:1]})
	if !strings.Contains(b.String(), "Alerts:\n  CRIT  the certificate expires in 6 days (firing; since 2026-11-27 03:00:00 UTC)\n") {
		t.Errorf("status:\n%s", b.String())
	}
}
