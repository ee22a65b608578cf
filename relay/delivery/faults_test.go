package delivery

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
)

// fakeMX starts a fake peer on 127.0.0.1:0 and a DNS server saying dest.test's MX is it.
func fakeMX(t *testing.T, configure func(*fakePeer)) (*fakePeer, int, *dnstest.Server) {
	t.Helper()
	f := startFake(t, "127.0.0.1:0", configure)
	_, p, _ := net.SplitHostPort(f.addr)
	port, _ := strconv.Atoi(p)
	dns := dnstest.New(t, mxZone("dest.test", "127.0.0.1")...)
	dns.Add(mxZone("sender.test", "127.0.0.1")...)
	return f, port, dns
}

func TestDelivery_451TwiceThen250(t *testing.T) {
	// The third DATA waits until the test has read the queue: the record is then exactly "claimed for the third
	// attempt, two deferrals in its history", whatever the timing.
	third, checked := make(chan struct{}), make(chan struct{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(checked) }) })
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.dataErr = func(n int) error {
			if n <= 2 {
				return replyErr4(451, smtp.EnhancedCode{4, 3, 0}, "try again later")
			}
			if n == 3 {
				close(third)
				select {
				case <-checked:
				case <-time.After(10 * time.Second):
				}
			}
			return nil
		}
	})
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	body := msgBody("retry")
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, body, "b@dest.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})

	waitFor(t, "two deferrals", 10*time.Second, func() bool { return rec.count(Deferred) >= 2 })
	select {
	case <-third:
	case <-time.After(10 * time.Second):
		t.Fatal("no third attempt after two deferrals")
	}
	m, err := st.Get(id)
	if err != nil {
		t.Fatalf("the message deferred twice is not in the queue: %v", err)
	}
	if r := m.Recipients[0]; r.State != queue.StateActive || len(r.History) != 2 {
		t.Errorf("during the third attempt: state %s, %d history entries; want active with 2", r.State, len(r.History))
	}
	for _, a := range m.Recipients[0].History {
		if a.Code != 451 || a.Enhanced != "4.3.0" || a.Outcome != "deferred" || a.Route != "direct" ||
			!strings.HasPrefix(a.Relay, "mx1.dest.test[127.0.0.1]:") {
			t.Errorf("history entry %+v", a)
		}
	}
	release.Do(func() { close(checked) })
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	waitFor(t, "queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
	msgs := f.messages()
	if len(msgs) != 1 {
		t.Fatalf("peer accepted %d messages, want exactly 1", len(msgs))
	}
	if !bytes.Equal(msgs[0].Data, []byte(body)) {
		t.Errorf("body at the peer differs:\n got %q\nwant %q", msgs[0].Data, body)
	}
	got := rec.list()
	if len(got) != 3 {
		t.Fatalf("%d attempts logged, want 3: %+v", len(got), got)
	}
	for i, want := range []Outcome{Deferred, Deferred, Sent} {
		if got[i].Outcome != want || got[i].Attempt != i+1 {
			t.Errorf("attempt %d: %s (#%d), want %s (#%d)", i, got[i].Outcome, got[i].Attempt, want, i+1)
		}
	}
	if got[2].Status.Code != 250 {
		t.Errorf("final status %v", got[2].Status)
	}
}

func TestDelivery_DropMidData(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.dataHook = func(n int, c *smtp.Conn, r io.Reader) error {
			if n == 1 {
				buf := make([]byte, 20)
				_, _ = io.ReadFull(r, buf)
				c.Conn().Close()
				return errors.New("dropped")
			}
			return nil
		}
	})
	st := openStore(t, t.TempDir())
	body := msgBody("drop") + strings.Repeat("line of text to make the body longer\r\n", 2000)
	put(t, st, queue.Envelope{From: "a@sender.test"}, body, "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	got := rec.list()
	if got[0].Outcome != Deferred || got[0].Status.Enhanced.String() != "4.4.2" {
		t.Errorf("first attempt %+v, want deferred 4.4.2", got[0])
	}
	msgs := f.messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, []byte(body)) {
		t.Fatalf("peer got %d messages (want 1, byte-identical)", len(msgs))
	}
}

func TestDelivery_StallHitsDeadline(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	_, port, dns := fakeMX(t, func(f *fakePeer) {
		f.dataHook = func(n int, c *smtp.Conn, r io.Reader) error {
			<-release // never reads the body: our writes must time out
			return errors.New("released")
		}
	})
	st := openStore(t, t.TempDir())
	// Larger than the socket buffers, so the body write itself blocks.
	body := msgBody("stall") + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 16000)
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, body, "b@dest.test")
	cfg := testConfig(port)
	cfg.Queue.RetryMin = config.Duration(30 * time.Second)
	cfg.Queue.RetryMax = config.Duration(30 * time.Second)
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{IOTimeout: 300 * time.Millisecond})
	waitFor(t, "a deferral", 15*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	r := rec.list()[0]
	if r.Status.Enhanced.String() != "4.4.2" || !strings.Contains(r.Status.Text, "timed out") {
		t.Errorf("stall gave %+v, want 4.4.2 conversation timed out", r.Status)
	}
	m, err := st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Recipients[0].State != queue.StateDeferred {
		t.Errorf("recipient state %s, want deferred", m.Recipients[0].State)
	}
}

func TestDelivery_452AfterSomeRecipients(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.rcptErr = func(n int, to string) error {
			if n > 2 {
				return replyErr4(452, smtp.EnhancedCode{4, 5, 3}, "too many recipients")
			}
			return nil
		}
	})
	st := openStore(t, t.TempDir())
	rcpts := []string{"r1@dest.test", "r2@dest.test", "r3@dest.test", "r4@dest.test", "r5@dest.test"}
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("452"), rcpts...)
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "all delivered", 10*time.Second, func() bool { return rec.count(Sent) == 5 })
	if n := rec.count(Deferred); n != 0 {
		t.Errorf("%d deferrals; a 452 after accepted recipients is not a failure", n)
	}
	msgs := f.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d transactions, want 3 (2+2+1)", len(msgs))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Sess != msgs[0].Sess {
			t.Errorf("the retry used another session")
		}
		for _, to := range m.To {
			if seen[to] {
				t.Errorf("%s delivered twice", to)
			}
			seen[to] = true
		}
	}
	if len(seen) != 5 {
		t.Errorf("delivered to %v", seen)
	}
}

// A peer that takes one message per connection (421 to the next MAIL): the next message goes at once on a new
// session, without a deferral.
func TestDelivery_StaleSessionRetriedOnce(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.mailErr = func(_, n int) error {
			if n > 1 {
				return replyErr4(421, smtp.EnhancedCode{4, 4, 2}, "one message per connection")
			}
			return nil
		}
	})
	st := openStore(t, t.TempDir())
	for i := range 3 {
		put(t, st, queue.Envelope{From: ""}, msgBody("stale"+strconv.Itoa(i)), "b@dest.test")
	}
	cfg := testConfig(port)
	cfg.Delivery.PerDestination = 1
	cfg.Queue.RetryMin = config.Duration(time.Minute)
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "all delivered", 10*time.Second, func() bool { return rec.count(Sent) == 3 })
	if n := rec.count(Deferred); n != 0 {
		t.Errorf("%d deferrals; a session closed by the peer must not cost the message an attempt", n)
	}
	if s := f.sessionCount(); s != 3 {
		t.Errorf("%d sessions, want 3 (one per message)", s)
	}
}

// A 4xx to the first MAIL of a session (greylisting, an overloaded host) moves the transaction to the next MX.
func TestDelivery_MAIL4xxTriesNextMX(t *testing.T) {
	busy := startFake(t, "127.0.0.1:0", func(f *fakePeer) {
		f.mailErr = func(int, int) error { return replyErr4(451, smtp.EnhancedCode{4, 7, 1}, "greylisted") }
	})
	port := portOf(t, busy.addr)
	ok := startFake(t, net.JoinHostPort("127.0.0.3", strconv.Itoa(port)), nil)
	dns := dnstest.New(t, mxZone("dest.test", "127.0.0.1", "127.0.0.3")...)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: ""}, msgBody("mail4xx"), "b@dest.test")
	_, rec, _ := run(t, testConfig(port), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	if r := rec.list()[0]; r.Attempt != 1 || !strings.HasPrefix(r.Relay, "mx2.dest.test[127.0.0.3]") {
		t.Errorf("delivered %+v, want by mx2 on the first attempt", r)
	}
	if len(ok.messages()) != 1 || len(busy.messages()) != 0 {
		t.Errorf("mx2 got %d, mx1 got %d", len(ok.messages()), len(busy.messages()))
	}
}
