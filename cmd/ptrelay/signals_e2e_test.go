package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// notifyListener is a unixgram socket standing in for systemd's NOTIFY_SOCKET: it records every datagram.
type notifyListener struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	// sun_path holds 108 bytes: t.TempDir under a long test name may not fit.
	dir, err := os.MkdirTemp("", "ptrelay-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifyListener{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifyListener) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// index returns the position of the first datagram at or after from that starts with prefix, or -1.
func (n *notifyListener) index(from int, prefix string) int {
	msgs := n.all()
	for i := from; i < len(msgs); i++ {
		if strings.HasPrefix(msgs[i], prefix) {
			return i
		}
	}
	return -1
}

// wait waits for a datagram starting with prefix at or after from and returns its position.
func (n *notifyListener) wait(t *testing.T, from int, prefix string) int {
	t.Helper()
	i := -1
	testkit.WaitForExplained(t, 30*time.Second, func() string {
		return fmt.Sprintf("no %q datagram after #%d; got %q", prefix, from, n.all())
	}, func() bool { i = n.index(from, prefix); return i >= 0 })
	return i
}

// mark sends a datagram of its own to the socket and waits until it has been read: every datagram sent
// before it has been read too (a datagram socket keeps its queue in order).
func (n *notifyListener) mark(t *testing.T) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const mark = "X_PTRELAY_TEST_MARK=1"
	if _, err := c.Write([]byte(mark)); err != nil {
		t.Fatal(err)
	}
	n.wait(t, 0, mark)
}

// clockMonotonicUsec reads CLOCK_MONOTONIC, the clock systemd compares MONOTONIC_USEC with.
func clockMonotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func (n *notifyListener) count(prefix string) int {
	c := 0
	for _, m := range n.all() {
		if strings.HasPrefix(m, prefix) {
			c++
		}
	}
	return c
}

// TestSignals_SdNotify runs the daemon as systemd's Type=notify would: READY=1 once serving, RELOADING=1 then
// READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, and WATCHDOG=1 at half of WATCHDOG_USEC meanwhile.
func TestSignals_SdNotify(t *testing.T) {
	relaytest.Require(t, "go")
	t.Parallel()
	n := listenNotify(t)
	d := startDaemon(t, relaytest.DaemonOptions{
		Config: opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", ""),
		// WATCHDOG_PID is left unset: the daemon then takes the watchdog as its own.
		Env: []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"},
	})
	ready := n.wait(t, 0, "READY=1")
	if n.index(0, "STOPPING=1") >= 0 || n.index(0, "RELOADING=1") >= 0 {
		t.Errorf("before any signal: %q", n.all())
	}
	testkit.WaitForExplained(t, 30*time.Second, func() string { return fmt.Sprintf("fewer than 2 WATCHDOG=1: %q", n.all()) },
		func() bool { return n.count("WATCHDOG=1") >= 2 })

	// A transaction open across the reload completes.
	open := openTransaction(t, d.Addr(), "a@example.com", "b@example.org")
	before := clockMonotonicUsec(t)
	d.Signal(syscall.SIGHUP)
	reloading := n.wait(t, ready+1, "RELOADING=1")
	after := clockMonotonicUsec(t)
	// systemd's Type=notify-reload needs MONOTONIC_USEC, on CLOCK_MONOTONIC (one clock for every process).
	msg := n.all()[reloading]
	_, field, _ := strings.Cut(msg, "\nMONOTONIC_USEC=")
	if usec, err := strconv.ParseInt(field, 10, 64); err != nil || usec < before || usec > after {
		t.Errorf("RELOADING=1 datagram %q: MONOTONIC_USEC not within [%d, %d], CLOCK_MONOTONIC read before the "+
			"signal and after the datagram", msg, before, after)
	}
	n.wait(t, reloading+1, "READY=1")
	if id := open.finish(t, "open across reload"); states(queueList(t, d)[id]) != "deferred" && states(queueList(t, d)[id]) != "queued" {
		t.Errorf("message %s accepted across the reload is not in the queue", id)
	}
	// The daemon must still serve after the reload.
	if _, err := injectFrom(d.Addr(), "", "a@example.com", "b@example.org", "after reload"); err != nil {
		t.Errorf("after SIGHUP: %v", err)
	}
	pings := n.count("WATCHDOG=1")
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no watchdog ping after the reload" },
		func() bool { return n.count("WATCHDOG=1") > pings })

	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d\n%s", code, tailLog(d))
	}
	stopping := n.wait(t, 0, "STOPPING=1")
	if stopping < reloading {
		t.Errorf("STOPPING=1 before the reload: %q", n.all())
	}
	if i := n.index(0, "STATUS="); i < 0 {
		t.Errorf("no STATUS= line: %q", n.all())
	}
}

// TestSignals_WatchdogForAnotherPid: WATCHDOG_PID naming another process means the watchdog is not ours.
func TestSignals_WatchdogForAnotherPid(t *testing.T) {
	relaytest.Require(t, "go")
	t.Parallel()
	n := listenNotify(t)
	d := startDaemon(t, relaytest.DaemonOptions{
		Config: opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", ""),
		Env:    []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"},
	})
	n.wait(t, 0, "READY=1")
	// A watchdog of ours pings at once, then every 100 ms. The daemon's whole life is over once it has exited
	// and our own datagram, queued behind everything it sent, has been read: then count.
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d\n%s", code, tailLog(d))
	}
	n.mark(t)
	if n.index(0, "STOPPING=1") < 0 {
		t.Fatalf("the daemon's datagrams did not all arrive: %q", n.all())
	}
	if c := n.count("WATCHDOG=1"); c != 0 {
		t.Errorf("%d WATCHDOG=1 pings for a watchdog that belongs to pid 1: %q", c, n.all())
	}
}

// TestSignals_ReloadRefusesBrokenConfig: a SIGHUP with a broken file is refused with a log line naming the
// problem and changes nothing, not even the valid parts of the broken file; the daemon keeps serving, and a
// later valid file takes effect without a restart (smart host and allowed_networks).
func TestSignals_ReloadRefusesBrokenConfig(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	listen := loopbackAddr(t, "127.0.0.1")
	cfg := func(smarthost, networks, extra string) string {
		return strings.Replace(opsConfig(listen, smarthost, "1h", extra), "[smtp]\n",
			"[smtp]\nallowed_networks = "+networks+"\n", 1)
	}
	d := startDaemon(t, relaytest.DaemonOptions{Config: cfg("127.0.0.1:9", `["127.0.0.1/32"]`, "")})
	first := inject(t, d.Addr(), "a@example.com", "b@example.org", "reload-first")
	waitDeferred(t, d, first)
	if _, err := injectFrom(d.Addr(), "127.0.0.5", "a@example.com", "b@example.org", "from .5"); err == nil ||
		!strings.Contains(err.Error(), "Relay access denied") {
		t.Fatalf("from 127.0.0.5 before the reload: %v, want 554 relay access denied", err)
	}

	// Broken: an unknown key, next to a smart host change that must not be applied.
	broken := cfg(sink.Addr(), `["127.0.0.0/8"]`, "\n[delivery]\nbogus_knob = 3\n")
	if err := os.WriteFile(d.ConfigFile(), []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no refusal logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), "reload refused")
	})
	var refusal string
	for _, l := range strings.Split(d.Stderr(), "\n") {
		if strings.Contains(l, "reload refused") {
			refusal = l
		}
	}
	if !strings.Contains(refusal, "bogus_knob") || !strings.Contains(refusal, "level=ERROR") {
		t.Errorf("the refusal does not name the unknown key at level ERROR: %s", refusal)
	}
	// Still the old smart host: a retry goes to the dead port again, and the old networks still apply. The CLI
	// reads the configuration too (for the admin socket) and would refuse the broken file: put the old one back
	// on disk, without a signal.
	if err := os.WriteFile(d.ConfigFile(), []byte(cfg("127.0.0.1:9", `["127.0.0.1/32"]`, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	mustPtrelay(t, d, "queue", "retry", first)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no second attempt:\n" + tailLog(d) }, func() bool {
		m := queueList(t, d)[first]
		return m != nil && m.Recipients[0].Attempts >= 2 && m.Recipients[0].State == queue.StateDeferred
	})
	if sink.MessageCount() != 0 {
		t.Fatalf("the broken configuration's smart host was used: the sink got %v", subjects(sink.Messages()))
	}
	if _, err := injectFrom(d.Addr(), "127.0.0.5", "a@example.com", "b@example.org", "from .5"); err == nil {
		t.Errorf("the broken configuration's allowed_networks were applied")
	}
	second := inject(t, d.Addr(), "a@example.com", "b@example.org", "reload-second")
	waitDeferred(t, d, second)

	// Valid: the smart host is the sink now, and 127.0.0.0/8 may relay. The DNS timeout changes too, which a
	// reload cannot apply: the log must say so.
	valid := strings.Replace(cfg(sink.Addr(), `["127.0.0.0/8"]`, ""), `timeout = "1s"`, `timeout = "2s"`, 1)
	if err := os.WriteFile(d.ConfigFile(), []byte(valid), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no reload logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), `msg="configuration reloaded"`) // serve's line, after Reload returned
	})
	if !strings.Contains(d.Stderr(), "next restart") || !strings.Contains(d.Stderr(), "dns.timeout") {
		t.Errorf("a changed dns.timeout was not reported as needing a restart:\n%s", tailLog(d))
	}
	mustPtrelay(t, d, "queue", "retry", "-all")
	msgs := sink.WaitMessages(t, 2, 30*time.Second)
	if bySubject(msgs, "reload-first") == nil || bySubject(msgs, "reload-second") == nil {
		t.Errorf("after the valid reload the sink has %v", subjects(msgs))
	}
	if _, err := injectFrom(d.Addr(), "127.0.0.5", "a@example.com", "b@example.org", "from .5"); err != nil {
		t.Errorf("from 127.0.0.5 after allowed_networks grew: %v", err)
	}
	sink.WaitMessages(t, 3, 30*time.Second)
	if d.Exited() {
		t.Fatal("the daemon exited")
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// TestSignals_SIGTERMUnderLoad: clients inject concurrently while SIGTERM arrives; the daemon exits 0 and every
// message it acknowledged with 250 is either at the sink or still in the queue.
func TestSignals_SIGTERMUnderLoad(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), sink.Addr(), "1h", "")})

	const clients = 6
	var mu sync.Mutex
	acked := map[string]string{} // queue ID -> subject
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 300 {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("load-%d-%d", c, n)
				id, err := injectFrom(d.Addr(), "", "load@example.com", "x@example.org", subject)
				mu.Lock()
				if err == nil {
					acked[id] = subject
				}
				mu.Unlock()
				if err != nil && d.Exited() {
					return
				}
			}
		}()
	}
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "clients got no 250s:\n" + tailLog(d) }, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 30
	})
	code := d.Stop()
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Errorf("SIGTERM under load: exit %d\n%s", code, tailLog(d))
	}

	q := queueList(t, d) // offline: the daemon is gone
	atSink := map[string]bool{}
	for _, m := range sink.Messages() {
		atSink[m.Header().Get("Subject")] = true
	}
	lost := 0
	for id, subject := range acked {
		if q[id] == nil && !atSink[subject] {
			lost++
			t.Errorf("message %s (%s) was acknowledged but is neither at the sink nor in the queue", id, subject)
		}
	}
	if len(atSink)+len(q) < len(acked) {
		t.Errorf("sink %d + queue %d < acknowledged %d", len(atSink), len(q), len(acked))
	}
	for _, m := range q {
		for _, r := range m.Recipients {
			if r.State == queue.StateActive {
				t.Errorf("message %s left active by the drain: deliveries in flight must go back to the queue", m.ID)
			}
		}
	}
	t.Logf("%d acknowledged, %d at the sink, %d left in the queue, %d lost", len(acked), len(atSink), len(q), lost)

	// The drain left what it interrupted due at once: the restarted daemon delivers all of it.
	d.Restart()
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "queue not empty after the restart:\n" + tailLog(d) }, func() bool {
		return len(queueList(t, d)) == 0
	})
	atSink = map[string]bool{}
	for _, m := range sink.Messages() {
		atSink[m.Header().Get("Subject")] = true
	}
	for id, subject := range acked {
		if !atSink[subject] {
			t.Errorf("message %s (%s) never reached the sink", id, subject)
		}
	}
}

// TestSignals_SIGTERMLetsTransactionsFinish: at SIGTERM a transaction in progress completes and is queued, an idle
// session is closed with a 421, and the daemon exits 0 once they are done, well inside the drain bound.
func TestSignals_SIGTERMLetsTransactionsFinish(t *testing.T) {
	relaytest.Require(t, "go")
	t.Parallel()
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h", "")})
	busy := openTransaction(t, d.Addr(), "a@example.com", "b@example.org")
	idle, err := net.DialTimeout("tcp", d.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(idle)
	if greeting, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	d.Signal(syscall.SIGTERM)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no drain logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), "stopping")
	})
	// The idle session is told, in words Exchange's queue shows, and closed.
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "421 4.3.2 Service shutting down, try again later (session ") {
		t.Errorf("idle session at SIGTERM got %q, %v; want 421 4.3.2 Service shutting down", line, err)
	}
	id := busy.finish(t, "finished during drain")
	_ = busy.c.Quit()
	code, err := d.Wait(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("after the drain: exit %d, %v\n%s", code, err, tailLog(d))
	}
	if got := states(queueList(t, d)[id]); got != "queued" && got != "deferred" {
		t.Errorf("message %s acknowledged during the drain is %s", id, got)
	}
}

// TestSignals_SIGTERMReturnsStalledDelivery: deliveries stuck on a smart host that sits on DATA do not hold
// SIGTERM up; they go back to the queue, due, and the restarted daemon delivers them. A hold asked for while
// one of them was in flight takes effect when its attempt ends: that one stays held across the restart.
func TestSignals_SIGTERMReturnsStalledDelivery(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	// -w: smtp-sink waits that many seconds before answering DATA.
	slow := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0", Args: []string{"-w", "300"}})
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), slow.Addr(), "1h", "")})
	stalled := inject(t, d.Addr(), "a@example.com", "b@example.org", "stalled")
	held := inject(t, d.Addr(), "a@example.com", "c@example.org", "held in flight")
	waitStates(t, d, "active", stalled, held)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "the deliveries never reached DATA:\n" + slow.Log() }, func() bool {
		return strings.Count(slow.Log(), "DATA") >= 2
	})
	mustPtrelay(t, d, "queue", "hold", held)
	if out := mustPtrelay(t, d, "queue", "show", held); !strings.Contains(out, "active, 1 attempt, hold requested") {
		t.Errorf("queue show of a message held in flight:\n%s", out)
	}
	d.Signal(syscall.SIGTERM)
	// The sink would answer in five minutes; the drain must not wait for it (relaytest allows 60 s).
	code, err := d.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("SIGTERM with deliveries stuck at DATA: exit %d, %v\n%s", code, err, tailLog(d))
	}
	q := queueList(t, d)
	if q[stalled] == nil || q[held] == nil {
		t.Fatalf("messages in flight at SIGTERM are gone from the queue: %v", q)
	}
	if r := q[stalled].Recipients[0]; r.State == queue.StateActive || r.State == queue.StateHold || !dueSoon(r, time.Minute) {
		t.Errorf("after the drain the stalled message is %s (next attempt %v); want back in the queue and due", r.State, r.NextAttempt)
	}
	if got := states(q[held]); got != "hold" {
		t.Errorf("after the drain the message held in flight is %s, want hold", got)
	}

	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	if err := os.WriteFile(d.ConfigFile(), []byte(opsConfig(d.Addr(), sink.Addr(), "1h", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if msgs := sink.WaitMessages(t, 1, 30*time.Second); msgs[0].Header().Get("Subject") != "stalled" {
		t.Errorf("sink got %v", subjects(msgs))
	}
	if got := states(queueList(t, d)[held]); got != "hold" {
		t.Errorf("after the restart the held message is %s", got)
	}
	mustPtrelay(t, d, "queue", "release", held)
	if msgs := sink.WaitMessages(t, 2, 30*time.Second); len(msgs) != 2 || msgs[1].Header().Get("Subject") != "held in flight" {
		t.Errorf("after release the sink has %v", subjects(msgs))
	}
}
