package delivery

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/queue"
)

// deferDest answers 451 to every recipient at dest.test and accepts the rest (the sender's DSNs).
func deferDest(_ int, to string) error {
	if strings.HasSuffix(to, "@dest.test") {
		return replyErr4(451, smtp.EnhancedCode{4, 3, 0}, "mailbox temporarily unavailable")
	}
	return nil
}

func dsns(f *fakePeer) []fakeMsg {
	var out []fakeMsg
	for _, m := range f.messages() {
		if m.From == "" {
			out = append(out, m)
		}
	}
	return out
}

func TestDelivery_ShutdownReturnsRecipients(t *testing.T) {
	release := make(chan struct{})
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.dataHook = func(n int, c *smtp.Conn, r io.Reader) error {
			<-release
			return nil
		}
	})
	t.Cleanup(func() { close(release) })
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Delivery.Concurrency = 1
	cfg.Delivery.PerDestination = 1
	cfg.Queue.RetryMin = config.Duration(time.Hour)
	cfg.Queue.RetryMax = config.Duration(time.Hour)
	first := put(t, st, queue.Envelope{From: ""}, msgBody("inflight"), "b@dest.test")
	second := put(t, st, queue.Envelope{From: ""}, msgBody("waiting"), "c@dest.test")
	_, rec, stop := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "DATA in flight", 10*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.dataN >= 1
	})
	before := time.Now()
	stop()
	m1, err := st.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	r := m1.Recipients[0]
	if r.State != queue.StateDeferred || r.NextAttempt.After(time.Now()) || r.NextAttempt.Before(before.Add(-time.Second)) {
		t.Errorf("in-flight recipient: state %s next %v, want deferred and due now", r.State, r.NextAttempt)
	}
	if a, ok := r.LastAttempt(); !ok || a.Enhanced != "4.3.2" {
		t.Errorf("in-flight recipient history %+v, want the interrupted attempt (4.3.2)", r.History)
	}
	m2, err := st.Get(second)
	if err != nil {
		t.Fatal(err)
	}
	if r := m2.Recipients[0]; r.State != queue.StateQueued && r.State != queue.StateDeferred || r.NextAttempt.After(time.Now()) {
		t.Errorf("waiting recipient: state %s next %v, want back in the queue, due now", r.State, r.NextAttempt)
	}
	if m2.Recipients[0].State == queue.StateQueued && m2.Recipients[0].Attempts != 0 {
		t.Errorf("a never-tried recipient kept attempts=%d", m2.Recipients[0].Attempts)
	}
	if n := rec.count(Sent); n != 0 {
		t.Errorf("%d deliveries reported for an interrupted DATA", n)
	}
}

func TestDelivery_Expiry(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = deferDest })
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	// Long enough that the DSN itself, queued later, cannot expire before it is sent even on a loaded machine.
	cfg.Queue.Lifetime = config.Duration(1500 * time.Millisecond)
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("expire"), "b@dest.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "expiry", 15*time.Second, func() bool { return rec.count(Expired) >= 1 })
	waitFor(t, "the DSN", 10*time.Second, func() bool { return len(dsns(f)) == 1 })
	waitFor(t, "queue empty", 5*time.Second, func() bool { return queueEmpty(t, st) })
	d := dsns(f)[0]
	for _, want := range []string{"Status: 4.4.7", "Diagnostic-Code: smtp; 451 4.3.0 mailbox temporarily unavailable", "b@dest.test"} {
		if !contains(d.Data, want) {
			t.Errorf("expiry DSN lacks %q:\n%s", want, d.Data)
		}
	}
	var exp Result
	for _, r := range rec.list() {
		if r.Outcome == Expired {
			exp = r
		}
	}
	if exp.ID != id || dsnField(exp) != "4.4.7" {
		t.Errorf("expired attempt %+v", exp)
	}
}

func TestDelivery_DelayWarningOnce(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = deferDest })
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Queue.DelayWarning = config.Duration(300 * time.Millisecond)
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("delay"), "b@dest.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "several deferrals past delay_warning", 15*time.Second, func() bool {
		n := 0
		for _, r := range rec.list() {
			if r.ID == id && r.Outcome == Deferred && r.Delay > 600*time.Millisecond {
				n++
			}
		}
		return n >= 2
	})
	waitFor(t, "the warning delivered", 5*time.Second, func() bool { return len(dsns(f)) >= 1 })
	d := dsns(f)
	if len(d) != 1 {
		t.Fatalf("%d delay warnings, want exactly one", len(d))
	}
	if !contains(d[0].Data, "Action: delayed") || d[0].To[0] != "a@sender.test" {
		t.Errorf("warning:\n%s", d[0].Data)
	}
	m, err := st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Recipients[0].DelayWarned || m.Recipients[0].State.Final() {
		t.Errorf("recipient after the warning: %+v", m.Recipients[0])
	}
}

func TestDelivery_AdminBounce(t *testing.T) {
	f, port, dns := fakeMX(t, func(f *fakePeer) { f.rcptErr = deferDest })
	st := openStore(t, t.TempDir())
	cfg := testConfig(port)
	cfg.Queue.RetryMin = config.Duration(time.Hour)
	cfg.Queue.RetryMax = config.Duration(time.Hour)
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("admin"), "b@dest.test")
	s, rec, _ := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "a deferral", 10*time.Second, func() bool { return rec.count(Deferred) == 1 })
	if _, err := st.Bounce(queue.Selector{IDs: []string{id}}); err != nil {
		t.Fatal(err)
	}
	s.Kick()
	waitFor(t, "the bounce", 10*time.Second, func() bool { return rec.count(Bounced) == 1 })
	waitFor(t, "the DSN", 10*time.Second, func() bool { return len(dsns(f)) == 1 })
	if d := dsns(f)[0]; !contains(d.Data, "Status: 5.0.0") || !contains(d.Data, "Subject: admin") {
		t.Errorf("admin bounce DSN:\n%s", d.Data)
	}
}
