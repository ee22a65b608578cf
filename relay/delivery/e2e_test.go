package delivery

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// Real peers: smtp-sink as the MX hosts on delivery.port, a real unbound serving their MX records, a real
// Postfix as the authenticated smart host. In-process fakes are used elsewhere only for faults.

// sinkAt starts smtp-sink on ip:port (port 0 picks one).
func sinkAt(t *testing.T, ip string, port int, opt relaytest.SinkOptions) *relaytest.Sink {
	t.Helper()
	opt.Addr = net.JoinHostPort(ip, strconv.Itoa(port))
	return relaytest.StartSink(t, opt)
}

// lf turns CRLF into LF: smtp-sink dumps with LF line ends, so this is how bodies are compared with it.
func lf(s string) []byte { return []byte(strings.ReplaceAll(s, "\r\n", "\n")) }

func TestE2E_DirectMX(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	preferred := sinkAt(t, "127.0.0.4", 0, relaytest.SinkOptions{Hostname: "mx1.two.test"})
	port := preferred.Port()
	backup := sinkAt(t, "127.0.0.3", port, relaytest.SinkOptions{Hostname: "mx2.two.test"})
	senderMX := sinkAt(t, "127.0.0.5", port, relaytest.SinkOptions{Hostname: "mx.sender.test"})
	rejecting := sinkAt(t, "127.0.0.6", port, relaytest.SinkOptions{Hostname: "mx.reject.test",
		Reject: map[string]string{"RCPT": "550 5.1.1 Recipient address rejected: User unknown"}})
	dnsAddr := dnstest.StartUnbound(t,
		"two.test. MX 10 mx1.two.test.", "two.test. MX 20 mx2.two.test.",
		"mx1.two.test. A 127.0.0.4", "mx2.two.test. A 127.0.0.3",
		"failover.test. MX 10 mx1.failover.test.", "failover.test. MX 20 mx2.failover.test.",
		"mx1.failover.test. A 127.0.0.2", "mx2.failover.test. A 127.0.0.3",
		"nullmx.test. MX 0 .",
		"aonly.test. A 127.0.0.3",
		"sender.test. MX 10 mx.sender.test.", "mx.sender.test. A 127.0.0.5",
		"reject.test. MX 10 mx.reject.test.", "mx.reject.test. A 127.0.0.6",
	)
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Queue.RetryMin = config.Duration(time.Minute)
	cfg.Queue.RetryMax = config.Duration(time.Minute)

	body := msgBody("e2e") + "8bit: caf\xc3\xa9\r\n"
	sender := queue.Envelope{From: "a@sender.test", BodyType: "8BITMIME"}
	put(t, st, sender, body, "x@two.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("failover"), "x@failover.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("aonly"), "x@aonly.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("nullmx"), "x@nullmx.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("nx"), "x@nxdomain.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("rejected"), "x@reject.test")
	put(t, st, queue.Envelope{From: ""}, msgBody("nullsender"), "y@reject.test")

	_, rec, stop := run(t, cfg, st, resolver(t, dnsAddr), Options{})
	// 3 delivered + 4 bounced + 3 DSNs delivered (no DSN for the null sender).
	waitFor(t, "every message settled", 20*time.Second, func() bool { return queueEmpty(t, st) && len(rec.list()) >= 10 })
	stop() // Run has returned: every attempt is in rec, and an empty queue holds no DSN still to come

	got := preferred.WaitMessages(t, 1, 5*time.Second)
	if got[0].From != "a@sender.test" || len(got[0].To) != 1 || got[0].To[0] != "x@two.test" {
		t.Errorf("preferred MX got envelope %q -> %v", got[0].From, got[0].To)
	}
	if !bytes.Equal(got[0].Data, lf(body)) {
		t.Errorf("body at the sink differs:\n got %q\nwant %q", got[0].Data, lf(body))
	}
	if !strings.Contains(got[0].MailArgs, "BODY=8BITMIME") {
		t.Errorf("MAIL FROM %q lost BODY=8BITMIME", got[0].MailArgs)
	}
	if got[0].Helo != cfg.Hostname {
		t.Errorf("EHLO %q, want %q", got[0].Helo, cfg.Hostname)
	}
	b := backup.WaitMessages(t, 2, 5*time.Second)
	rcpts := map[string]bool{}
	for _, m := range b {
		rcpts[m.To[0]] = true
	}
	if !rcpts["x@failover.test"] || !rcpts["x@aonly.test"] {
		t.Errorf("backup MX got %v, want the failover and the implicit-MX messages", rcpts)
	}
	if n := rejecting.MessageCount(); n != 0 {
		t.Errorf("rejecting MX completed %d transactions", n)
	}
	dsnMsgs := senderMX.WaitMessages(t, 3, 5*time.Second)
	sentToSender := 0
	for _, r := range rec.list() {
		if r.Rcpt == "a@sender.test" && r.Outcome == Sent {
			sentToSender++
		}
	}
	if n := senderMX.MessageCount(); n != 3 || sentToSender != 3 {
		t.Errorf("sender's MX got %d DSNs, the relay sent %d; want 3 (none for the null sender)", n, sentToSender)
	}
	want := map[string]string{ // failed recipient -> Status
		"x@nullmx.test":   "Status: 5.1.10",
		"x@nxdomain.test": "Status: 5.1.2",
		"x@reject.test":   "Status: 5.1.1",
	}
	for _, m := range dsnMsgs {
		if m.From != "" || m.To[0] != "a@sender.test" {
			t.Errorf("DSN envelope %q -> %v", m.From, m.To)
		}
		matched := false
		for rcpt, status := range want {
			if bytes.Contains(m.Data, []byte("Final-Recipient: rfc822; "+rcpt)) {
				matched = true
				if !bytes.Contains(m.Data, []byte(status)) {
					t.Errorf("DSN for %s lacks %q:\n%s", rcpt, status, m.Data)
				}
				if rcpt == "x@reject.test" && !bytes.Contains(m.Data, []byte("Diagnostic-Code: smtp; 550 5.1.1")) {
					t.Errorf("DSN for %s lacks the remote's Diagnostic-Code:\n%s", rcpt, m.Data)
				}
				delete(want, rcpt)
			}
		}
		if !matched {
			t.Errorf("unexpected DSN:\n%s", m.Data)
		}
	}
	for _, r := range rec.list() {
		if r.Rcpt == "y@reject.test" && r.Outcome != Bounced {
			t.Errorf("null-sender message: %+v", r)
		}
	}
}

func TestE2E_DestinationDownThenUp(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	port := relaytest.FreePort(t, "127.0.0.7")
	dnsAddr := dnstest.StartUnbound(t, "down.test. MX 10 mx.down.test.", "mx.down.test. A 127.0.0.7")
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Queue.RetryMin = config.Duration(500 * time.Millisecond)
	cfg.Queue.RetryMax = config.Duration(500 * time.Millisecond)
	id := put(t, st, queue.Envelope{From: ""}, msgBody("downup"), "x@down.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dnsAddr), Options{})
	waitFor(t, "a deferral", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	if r := rec.list()[0]; dsnField(r) != "4.4.1" {
		t.Errorf("destination down: %+v, want 4.4.1", r)
	}
	sink := sinkAt(t, "127.0.0.7", port, relaytest.SinkOptions{})
	waitFor(t, "delivery once up", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
	if m := sink.WaitMessages(t, 1, 5*time.Second); m[0].To[0] != "x@down.test" {
		t.Errorf("sink got %+v", m[0])
	}
	if _, err := st.Get(id); err == nil {
		t.Errorf("delivered message still queued")
	}
}

func TestE2E_ConnectionReuse(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	sink := sinkAt(t, "127.0.0.8", 0, relaytest.SinkOptions{})
	dnsAddr := dnstest.StartUnbound(t, "reuse.test. MX 10 mx.reuse.test.", "mx.reuse.test. A 127.0.0.8")
	st := openStore(t, t.TempDir())
	cfg := testConfig(sink.Port())
	cfg.Delivery.PerDestination = 5
	cfg.Delivery.Bind = "127.0.0.12"
	const n = 50
	for i := range n {
		put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody(fmt.Sprintf("reuse%d", i)), "x@reuse.test")
	}
	_, rec, _ := run(t, cfg, st, resolver(t, dnsAddr), Options{})
	waitFor(t, "all delivered", 30*time.Second, func() bool { return rec.count(Sent) == n })
	for _, m := range sink.WaitMessages(t, n, 10*time.Second) {
		if m.ClientAddr != "127.0.0.12" {
			t.Fatalf("connection came from %s, want delivery.bind 127.0.0.12", m.ClientAddr)
		}
	}
	if s := sink.Sessions(); s > 5 || s < 1 {
		t.Errorf("%d sessions for %d messages, want 1..5 (per_destination)", s, n)
	}
}

// TestE2E_SmarthostPostfix: a real Postfix with Cyrus SASL (sasldb) as the smart host, relaying to a sink.
func TestE2E_SmarthostPostfix(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "saslpasswd2")
	sink := sinkAt(t, "127.0.0.9", 0, relaytest.SinkOptions{})
	pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{
		Addr:            "127.0.0.10:0",
		ImplicitTLSAddr: "127.0.0.10:0",
		Users:           map[string]string{"relayuser": "goodpass"},
		RelayTo:         sink.Addr(),
	})
	dir := t.TempDir()
	writePass := func(name, pass string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := writePass("good", "goodpass"), writePass("bad", "wrongpass")
	shCfg := func(addr string, mode config.SmarthostTLS, pass string) *config.Config {
		c := testConfig(1)
		c.Routing.Mode = "smarthost"
		c.Smarthosts = []config.Smarthost{smarthostEntry(addr, mode, func(h *config.Smarthost) { h.Username, h.PasswordFile = "relayuser", pass })}
		c.Queue.RetryMin = config.Duration(time.Minute)
		c.Queue.RetryMax = config.Duration(time.Minute)
		return c
	}
	cases := []struct {
		name     string
		cfg      *config.Config
		trust    bool
		outcome  Outcome
		enhanced string
	}{
		{"STARTTLS and good credentials deliver", shCfg(pf.Addr(), "starttls", good), true, Sent, ""},
		{"implicit TLS delivers", shCfg(pf.ImplicitTLSAddr(), "implicit", good), true, Sent, ""},
		{"wrong password defers", shCfg(pf.Addr(), "starttls", bad), true, Deferred, "4.7.8"},
		{"untrusted certificate with tls_verify defers", shCfg(pf.Addr(), "starttls", good), false, Deferred, "4.7.5"},
	}
	// Office 365 offers LOGIN only: a second instance filters its mechanisms down to LOGIN.
	loginOnly := relaytest.StartPostfix(t, relaytest.PostfixOptions{
		Addr:    "127.0.0.13:0",
		Users:   map[string]string{"relayuser": "goodpass"},
		RelayTo: sink.Addr(),
		MainCF:  []string{"smtpd_sasl_mechanism_filter = login"},
	})
	cases = append(cases, struct {
		name     string
		cfg      *config.Config
		trust    bool
		outcome  Outcome
		enhanced string
	}{"AUTH LOGIN when the server offers only LOGIN", shCfg(loginOnly.Addr(), "starttls", good), true, Sent, ""})
	delivered := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			subject := fmt.Sprintf("smarthost%d", i)
			body := msgBody(subject)
			put(t, st, queue.Envelope{From: "a@sender.test"}, body, "x@far.test")
			h := Options{}
			if c.trust {
				h.RootCAs = pf.Pool()
				if strings.HasPrefix(c.cfg.Smarthosts[0].Address, "127.0.0.13:") {
					h.RootCAs = loginOnly.Pool()
				}
			}
			_, rec, stop := run(t, c.cfg, st, nil, h)
			waitFor(t, "an attempt", 20*time.Second, func() bool { return len(rec.list()) >= 1 })
			stop()
			r := rec.list()[0]
			if r.Outcome != c.outcome || r.Route != "smarthost" {
				t.Fatalf("attempt %+v (%s), want %s via smarthost\n%s", r, replyText(r.Status), c.outcome, pf.Log())
			}
			if c.enhanced != "" && dsnField(r) != c.enhanced {
				t.Errorf("recorded %s, want dsn %s", replyText(r.Status), c.enhanced)
			}
			if rec.count(Bounced) != 0 {
				t.Errorf("a smart host failure bounced mail")
			}
			if strings.HasPrefix(c.cfg.Smarthosts[0].Address, "127.0.0.13:") {
				waitFor(t, "Postfix to log the LOGIN mechanism", 10*time.Second, func() bool {
					return strings.Contains(loginOnly.Log(), "sasl_method=LOGIN")
				})
			}
			if c.outcome == Sent {
				delivered++
				msgs := sink.WaitMessages(t, delivered, 20*time.Second)
				found := false
				for _, m := range msgs {
					if bytes.Contains(m.Data, []byte("Subject: "+subject+"\n")) {
						found = true
						if !bytes.HasSuffix(m.Data, lf(body[strings.Index(body, "\r\n\r\n")+4:])) {
							t.Errorf("body changed on the way:\n%s", m.Data)
						}
					}
				}
				if !found {
					t.Errorf("message %s not at the sink behind the smart host", subject)
				}
			}
		})
	}
}
