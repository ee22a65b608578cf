package delivery

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// Smart hosts' limits and filters against in-process peers, with an injected clock where time matters.

// TestSmarthost_RateLimit: with message_rate = ["30/min"] the 31st message within a minute (an injected clock
// that does not move) goes to the next host with when_limited = "next", and with "wait" stays for the first host
// until its window frees, without counting as an attempt.
func TestSmarthost_RateLimit(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			a := startFake(t, "127.0.0.1:0", nil)
			b := startFake(t, "127.0.0.1:0", nil)
			clk := newTestClock()
			cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) {
				h.MessageRate = []string{"30/min"}
				if wait {
					h.WhenLimited = config.LimitedWait
				}
			}), plainHost("b", b.addr, nil))
			st := openStore(t, t.TempDir())
			for i := range 31 {
				put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody(fmt.Sprintf("r%d", i)), "x@far.test")
			}
			s, rec, _ := run(t, cfg, st, nil, Options{Now: clk.Now})
			if !wait {
				waitFor(t, "31 deliveries", 20*time.Second, func() bool { return rec.count(Sent) == 31 })
				if len(a.messages()) != 30 || len(b.messages()) != 1 {
					t.Fatalf("a got %d, b %d; want 30 and the 31st at b", len(a.messages()), len(b.messages()))
				}
				return
			}
			waitFor(t, "30 deliveries and one wait", 20*time.Second, func() bool { return rec.count(Sent) == 30 && rec.count(Deferred) == 1 })
			var w Result
			for _, r := range rec.list() {
				if r.Outcome == Deferred {
					w = r
				}
			}
			if dsnField(w) != "4.4.5" || !strings.Contains(w.Status.Text, "sending limit") || w.Attempt != 0 {
				t.Errorf("the waiting message: %+v (%s), want 4.4.5 at its sending limit, not counted as an attempt", w, w.Reply())
			}
			if hs := s.SmarthostStatus()[0]; hs.State != "limited" || hs.Budgets[0].Used != 30 || hs.Budgets[0].Limit != 30 {
				t.Errorf("a's status %+v, want limited with 30/30 msg 1m", hs)
			}
			m, err := st.Get(w.ID)
			if err != nil {
				t.Fatal(err)
			}
			if next := m.Recipients[0].NextAttempt; next.Before(clk.Now()) || next.After(clk.Now().Add(time.Minute+2*time.Second)) {
				t.Errorf("waits until %v, want within a minute of %v", next, clk.Now())
			}
			clk.Advance(time.Minute + 2*time.Second)
			s.Kick()
			waitFor(t, "the 31st through a once its window frees", 20*time.Second, func() bool { return len(a.messages()) == 31 })
			if len(b.messages()) != 0 {
				t.Errorf("with when_limited = wait, b got %d messages", len(b.messages()))
			}
		})
	}
}

// TestSmarthost_DayWindowSurvivesRestart: a day budget spent before a restart is still spent after it (the
// windows are in the queue database): the 11th recipient under recipient_rate = ["10/day"] goes to the next
// host.
func TestSmarthost_DayWindowSurvivesRestart(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", nil)
	b := startFake(t, "127.0.0.1:0", nil)
	clk := newTestClock()
	cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) { h.RecipientRate = []string{"10/day"} }),
		plainHost("b", b.addr, nil))
	dir := t.TempDir()
	st := openStore(t, dir)
	for i := range 10 {
		put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody(fmt.Sprintf("d%d", i)), "x@far.test")
	}
	_, rec, stop := run(t, cfg, st, nil, Options{Now: clk.Now})
	waitFor(t, "ten through a", 15*time.Second, func() bool { return rec.count(Sent) == 10 })
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour)
	st2 := openStore(t, dir)
	put(t, st2, queue.Envelope{From: "s@sender.test"}, msgBody("eleventh"), "x@far.test")
	s2, rec2, _ := run(t, cfg, st2, nil, Options{Now: clk.Now})
	waitFor(t, "the eleventh", 15*time.Second, func() bool { return rec2.count(Sent) == 1 })
	if len(a.messages()) != 10 || len(b.messages()) != 1 {
		t.Errorf("a got %d, b %d: the day's budget of a was forgotten at the restart", len(a.messages()), len(b.messages()))
	}
	if bu := s2.SmarthostStatus()[0].Budgets[0]; bu.Used != 10 || bu.Limit != 10 || bu.Window != 24*time.Hour {
		t.Errorf("a's budget after the restart: %+v", bu)
	}
}

// TestSmarthost_MaxRecipientsSplits: a message for five recipients through a host that takes two per
// transaction goes in three transactions, all delivered.
func TestSmarthost_MaxRecipientsSplits(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", nil)
	cfg := shConfig(plainHost("a", a.addr, func(h *config.Smarthost) { h.MaxRecipients = 2 }))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("split"), "r1@far.test", "r2@far.test", "r3@far.test", "r4@far.test", "r5@far.test")
	_, rec, _ := run(t, cfg, st, nil, Options{})
	waitFor(t, "five deliveries", 15*time.Second, func() bool { return rec.count(Sent) == 5 })
	var sizes []int
	var all []string
	for _, m := range a.messages() {
		sizes = append(sizes, len(m.To))
		all = append(all, m.To...)
	}
	slices.Sort(sizes)
	slices.Sort(all)
	if fmt.Sprint(sizes) != "[1 2 2]" || strings.Join(all, ",") != "r1@far.test,r2@far.test,r3@far.test,r4@far.test,r5@far.test" {
		t.Errorf("transactions of %v recipients with %v, want two of 2 and one of 1, each recipient once", sizes, all)
	}
	waitFor(t, "the queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
}

// TestSmarthost_SendersAndRefusedSender: senders = ["a.test"] keeps other senders off a host; a sender a host
// refuses at MAIL goes to the next host; refused by every host that may carry it, it bounces.
func TestSmarthost_SendersAndRefusedSender(t *testing.T) {
	var mu sync.Mutex
	cRefuses := false
	// b always refuses ceo@ as a sender; c only once told to.
	refuse := func(at string) func(string) error {
		return func(from string) error {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(from, "ceo@") && (at == "b" || cRefuses) {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address rejected: not owned by user relay"}
			}
			return nil
		}
	}
	a := startFake(t, "127.0.0.1:0", nil)
	b := startFake(t, "127.0.0.1:0", func(f *fakePeer) { f.mailErrFrom = refuse("b") })
	c := startFake(t, "127.0.0.1:0", func(f *fakePeer) { f.mailErrFrom = refuse("c") })
	cfg := shConfig(
		plainHost("a", a.addr, func(h *config.Smarthost) { h.Senders = []string{"a.test"} }),
		plainHost("b", b.addr, nil),
		plainHost("c", c.addr, nil))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "x@a.test"}, msgBody("from-a"), "r@far.test")
	put(t, st, queue.Envelope{From: "x@b.test"}, msgBody("from-b"), "r@far.test")
	put(t, st, queue.Envelope{From: "ceo@b.test"}, msgBody("ceo-to-c"), "r@far.test")
	_, rec, _ := run(t, cfg, st, nil, Options{})
	waitFor(t, "three deliveries", 15*time.Second, func() bool { return rec.count(Sent) == 3 })
	if got := strings.Join(subjects(a.messages()), ","); got != "from-a" {
		t.Errorf("a (senders a.test) got %q", got)
	}
	if got := strings.Join(subjects(b.messages()), ","); got != "from-b" {
		t.Errorf("b got %q", got)
	}
	if got := strings.Join(subjects(c.messages()), ","); got != "ceo-to-c" {
		t.Errorf("c got %q: the sender b refused did not go on to c", got)
	}

	mu.Lock()
	cRefuses = true
	mu.Unlock()
	put(t, st, queue.Envelope{From: "ceo@b.test"}, msgBody("ceo-nowhere"), "r@far.test")
	waitFor(t, "the bounce", 15*time.Second, func() bool { return rec.count(Bounced) == 1 })
	for _, r := range rec.list() {
		if r.Outcome == Bounced && (r.Status.Code != 550 || !strings.HasPrefix(r.Relay, "c/")) {
			t.Errorf("bounce %+v, want c's 550 (the last host's refusal)", r)
		}
	}
	if rec.count(Deferred) != 0 {
		t.Errorf("%d deferrals", rec.count(Deferred))
	}
}

// TestSmarthost_QuotaLimitsTheHost: a host that refuses for its daily quota (Google's "550 5.4.5 Daily SMTP relay
// limit exceeded") is limited: that message and the next ones go to the next host without asking it again,
// until its window frees; nothing bounces.
func TestSmarthost_QuotaLimitsTheHost(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.rcptErr = func(_ int, _ string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 4, 5}, Message: "Daily SMTP relay limit exceeded for user"}
		}
	})
	b := startFake(t, "127.0.0.1:0", nil)
	clk := newTestClock()
	cfg := shConfig(plainHost("a", a.addr, nil), plainHost("b", b.addr, nil))
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("q1"), "x@far.test")
	s, rec, _ := run(t, cfg, st, nil, Options{Now: clk.Now})
	waitFor(t, "the first through b", 15*time.Second, func() bool { return len(b.messages()) == 1 })
	sessions := a.sessionCount()
	put(t, st, queue.Envelope{From: "s@sender.test"}, msgBody("q2"), "x@far.test")
	waitFor(t, "the second through b", 15*time.Second, func() bool { return len(b.messages()) == 2 })
	if a.sessionCount() != sessions {
		t.Errorf("a limited host was asked again")
	}
	hs := s.SmarthostStatus()[0]
	if hs.State != "limited" || !hs.LimitedUntil.Equal(clk.Now().Add(noWindowQuotaPause)) || !strings.Contains(hs.LastError, "5.4.5") {
		t.Errorf("a's status %+v, want limited for an hour (no window configured) with the 5.4.5", hs)
	}
	if rec.count(Bounced) != 0 || rec.count(Deferred) != 0 {
		t.Errorf("%d bounced, %d deferred", rec.count(Bounced), rec.count(Deferred))
	}
}

// TestSmarthost_ClientCertificate: a host that wants a client certificate (a connector that knows the sending
// server by it) gets the one tls_client_cert names; without it the TLS handshake fails and the mail is deferred.
func TestSmarthost_ClientCertificate(t *testing.T) {
	serverCert, serverKey, serverPool := relaytest.MakeCert(t, t.TempDir(), "127.0.0.1")
	clientCert, clientKey, clientPool := relaytest.MakeCert(t, t.TempDir(), "relay.contoso.test")
	pair, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	f := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.tls = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	})
	for _, withCert := range []bool{true, false} {
		t.Run(fmt.Sprintf("cert=%v", withCert), func(t *testing.T) {
			h := config.NewSmarthost("connector", f.addr)
			h.Auth = config.AuthNone
			if withCert {
				h.TLSClientCert, h.TLSClientKey = clientCert, clientKey
			}
			st := openStore(t, t.TempDir())
			put(t, st, queue.Envelope{From: "s@contoso.test"}, msgBody("cert"), "x@far.test")
			_, rec, _ := run(t, shConfig(h), st, nil, Options{RootCAs: serverPool})
			waitFor(t, "an attempt", 15*time.Second, func() bool { return len(rec.list()) >= 1 })
			r := rec.list()[0]
			if !withCert {
				// TLS 1.3: the server's refusal arrives with the first reply after the handshake.
				if r.Outcome != Deferred || !strings.Contains(r.Status.Text, "tls: certificate required") {
					t.Errorf("without the certificate: %+v (%s), want deferred for the missing certificate", r, r.Reply())
				}
				return
			}
			msgs := f.messages()
			if r.Outcome != Sent || len(msgs) != 1 || msgs[0].ClientCert != "relay.contoso.test" {
				t.Errorf("with the certificate: %+v, messages %+v", r, msgs)
			}
		})
	}
}
