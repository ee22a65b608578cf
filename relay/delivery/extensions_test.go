package delivery

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

func TestDelivery_IPv6MX(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		testkit.Missing(t, "no IPv6 loopback: "+err.Error())
	}
	ln.Close()
	f := startFake(t, ln.Addr().String(), nil)
	dns := dnstest.New(t, "v6.test. MX 10 mx.v6.test.", "mx.v6.test. AAAA ::1")
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("v6"), "x@v6.test")
	_, rec, _ := run(t, testConfig(portOf(t, f.addr)), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	if r := rec.list()[0]; !strings.HasPrefix(r.Relay, "mx.v6.test[::1]:") {
		t.Errorf("relay %q, want mx.v6.test[::1]:port", r.Relay)
	}
}

func TestDelivery_DSNParametersAndSMTPUTF8(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.ext = func(s *smtp.Server) { s.EnableDSN = true; s.EnableSMTPUTF8 = true }
	})
	st := openStore(t, t.TempDir())
	w, err := st.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(msgBody("dsnparams")))
	_, err = w.Commit(queue.Envelope{From: "a@sender.test", SMTPUTF8: true, Ret: "HDRS", EnvID: "env-1"}, []queue.Recipient{
		{Addr: "b@dest.test", State: queue.StateQueued, Notify: []string{"FAILURE", "DELAY"}, ORcpt: "rfc822;orig@dest.test"},
		{Addr: "c@dest.test", State: queue.StateQueued},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 2 })
	m := f.messages()[0]
	if want := []string{"b@dest.test NOTIFY=FAILURE NOTIFY=DELAY ORCPT=RFC822;orig@dest.test", "c@dest.test"}; strings.Join(m.Rcpt, "|") != strings.Join(want, "|") {
		t.Errorf("RCPT parameters %q, want %q", m.Rcpt, want)
	}
	if !m.UTF8 {
		t.Errorf("SMTPUTF8 not passed on")
	}
}

func TestDelivery_SMTPUTF8NotOfferedBounces(t *testing.T) {
	f, port, dns := fakeMX(t, nil)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "", SMTPUTF8: true}, msgBody("utf8"), "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "bounce", 10*time.Second, func() bool { return rec.count(Bounced) == 1 })
	if r := rec.list()[0]; dsnField(r) != "5.6.7" {
		t.Errorf("got %+v, want 5.6.7", r)
	}
	if len(f.messages()) != 0 {
		t.Errorf("message sent without SMTPUTF8")
	}
}

func TestLogLine(t *testing.T) {
	var buf bytes.Buffer
	var hooked []Result
	s := New(NewSettings(testConfig(25)), Env{Log: slog.New(slog.NewTextHandler(&buf, nil)),
		Observers: Observers{OnAttempt: func(r Result) { hooked = append(hooked, r) }}})
	s.logAttempt(Result{ID: "6C4ABC", Rcpt: "b@dest.test", Route: "direct", Relay: "mx1.dest.test[192.0.2.1]:25",
		Outcome: Sent, Status: smtpstatus.Status{Code: 250, Enhanced: smtpstatus.Enhanced{2, 0, 0}, Text: "Ok: queued as X"},
		Delay: 1234 * time.Millisecond, Attempt: 1})
	s.logAttempt(Result{ID: "6C4ABD", Rcpt: "c@nx.test", Outcome: Bounced, Delay: 42 * time.Second,
		Status: smtpstatus.Status{Enhanced: smtpstatus.Enhanced{5, 1, 2}, Text: "Host or domain name not found"}})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || len(hooked) != 2 {
		t.Fatalf("%d lines, %d hook calls, want 2 each:\n%s", len(lines), len(hooked), buf.String())
	}
	for i, want := range [][]string{
		{"id=6C4ABC", "to=<b@dest.test>", "relay=mx1.dest.test[192.0.2.1]:25", "route=direct", "delay=1.2", "dsn=2.0.0", "status=sent", `reply="250 2.0.0 Ok: queued as X"`},
		{"id=6C4ABD", "to=<c@nx.test>", "relay=none", "route=none", "delay=42", "dsn=5.1.2", "status=bounced", `reply="5.1.2 Host or domain name not found"`},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %s:\n%s", i, w, lines[i])
			}
		}
	}
}
