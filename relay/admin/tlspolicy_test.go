package admin

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
)

// TestAdmin_MTASTSRoutes: show and flush over the socket reach the daemon's functions with the domain asked.
func TestAdmin_MTASTSRoutes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv := NewServer(fakeQueue{}, nil, nil, nil)
	want := []MTASTSPolicy{{Domain: "gmail.com", ID: "20190429T010101", Mode: "enforce", MX: []string{"gmail-smtp-in.l.google.com"},
		MaxAge: 86400, Fetched: t0, Expires: t0.Add(24 * time.Hour)}}
	var listed, flushed []string
	srv.SetMTASTS(func(d string) ([]MTASTSPolicy, error) { listed = append(listed, d); return want, nil },
		func(d string) (int, error) { flushed = append(flushed, d); return 3, nil })
	serve(t, srv, sock, "")
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.MTASTS("gmail.com")
	if err != nil || len(got) != 1 || got[0].ID != want[0].ID || !got[0].Expires.Equal(want[0].Expires) {
		t.Fatalf("MTASTS = %+v, %v", got, err)
	}
	if n, err := c.MTASTSFlush(""); err != nil || n != 3 {
		t.Fatalf("MTASTSFlush = %d, %v", n, err)
	}
	if strings.Join(listed, ",") != "gmail.com" || len(flushed) != 1 || flushed[0] != "" {
		t.Errorf("the daemon was asked: list %q, flush %q", listed, flushed)
	}
}

func TestRenderMTASTS(t *testing.T) {
	var b strings.Builder
	err := RenderMTASTS(&b, []MTASTSPolicy{
		{Domain: "example.com", ID: "2", Mode: "enforce", MX: []string{"mx1.example.com", "*.mx.example.com"}, MaxAge: 604800,
			Fetched: t0, Expires: t0.Add(7 * 24 * time.Hour), LastUse: t0.Add(time.Hour), LastError: "https://mta-sts.example.com/.well-known/mta-sts.txt answered 500 Internal Server Error",
			RetryID: "3", RetryAfter: t0.Add(5 * time.Minute)},
		{Domain: "nopolicy.example", LastError: "no MTA-STS record", RetryAfter: t0.Add(5 * time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `example.com  mode enforce  id 2
  mx:       mx1.example.com *.mx.example.com
  max_age:  604800s, fetched 2026-11-27 03:00:00 UTC, expires 2026-12-04 03:00:00 UTC
  used:     2026-11-27 04:00:00 UTC
  error:    https://mta-sts.example.com/.well-known/mta-sts.txt answered 500 Internal Server Error
  retry:    policy id 3 not fetched again before 2026-11-27 03:05:00 UTC

nopolicy.example  no policy (no MTA-STS record); looked up again after 2026-11-27 03:05:00 UTC
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	_ = RenderMTASTS(&b, nil)
	if b.String() != "No MTA-STS policy is cached.\n" {
		t.Errorf("empty: %q", b.String())
	}
}

// TestRenderStatus_TLSPolicy: DANE off says why with the configuration that fixes it; MTA-STS and the TLS-RPT
// counts follow.
func TestRenderStatus_TLSPolicy(t *testing.T) {
	st := Status{Version: "1.0", Queue: queue.Stats{}, TLSPolicy: &TLSPolicyStatus{
		DANE: "off", DANEDetail: "192.0.2.53:53 is not on this machine", DANEFix: "run unbound:\n  apt-get install unbound",
		MTASTS: true, Policies: 1,
		Reports: []TLSReport{{Day: "2026-11-27", Domain: "gmail.com", Type: "sts", Success: 12},
			{Day: "2026-11-27", Domain: "posteo.de", Type: "tlsa", Success: 3, Failures: map[string]int{"validation-failure": 1, "dnssec-invalid": 2}}},
	}}
	var b strings.Builder
	if err := RenderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"DANE:          off: 192.0.2.53:53 is not on this machine\n",
		"                 run unbound:\n",
		"                   apt-get install unbound\n",
		"MTA-STS:       on: 1 policy cached (ptrelay mtasts show)\n",
		"  2026-11-27  gmail.com                      sts  12 ok, 0 failed\n",
		"  2026-11-27  posteo.de                      tlsa 3 ok, 3 failed (dnssec-invalid 2, validation-failure 1)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// TestRenderShow_TLS: queue show names the level of each attempt, and so the policy that deferred one.
func TestRenderShow_TLS(t *testing.T) {
	m := &queue.Message{ID: "0ABCDEFGH9999", Arrival: t0, Recipients: []queue.Recipient{{Addr: "x@gmail.com",
		State: queue.StateDeferred, Attempts: 1, NextAttempt: t0.Add(time.Hour), History: []queue.Attempt{{At: t0,
			Route: "direct", Relay: "none", Enhanced: "4.7.0", Outcome: "deferred", TLS: "mta-sts",
			Text: "MTA-STS policy of gmail.com (enforce, id 1) does not list MX host mx.evil.test"}}}}}
	var b strings.Builder
	if err := RenderShow(&b, m, nil, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "direct     deferred  none  tls=mta-sts\n        4.7.0 MTA-STS policy of gmail.com") {
		t.Errorf("queue show:\n%s", b.String())
	}
}
