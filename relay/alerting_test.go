package relay

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/alerts"
)

// newIdleRelay builds a daemon that is not running: the tests call its checks by hand, so each decision is
// seen without waiting for a timer.
func newIdleRelay(t *testing.T, alertKeys string, free *atomic.Uint64) *Relay {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname = "relay.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
[egress]
ip = "192.0.2.1"
discovery = []
dnsbl = []
port25_probe = ""
[dns]
resolvers = ["127.0.0.1:9"]
[admin]
socket = %q
[alerts]
%s
`, dir, filepath.Join(dir, "admin.sock"), alertKeys)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test",
		FreeSpace: func(string) (uint64, uint64, error) { return free.Load(), 1000, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.closeAll)
	return r
}

// disk.low: raised below disk_free, kept between the threshold and 1.2 times it, cleared above.
func TestDiskAlerts_Hysteresis(t *testing.T) {
	var free atomic.Uint64
	r := newIdleRelay(t, `disk_free = "10%"`, &free)
	dir := r.cfg.Load().DataDir
	for _, step := range []struct {
		free uint64
		want bool
	}{
		{500, false}, {99, true}, {110, true}, {120, true}, {121, false}, {100, false}, {99, true},
	} {
		free.Store(step.free)
		r.diskAlerts()
		if got := r.alerts.Holds(alerts.EventDiskLow, dir); got != step.want {
			t.Fatalf("free %d of 1000: disk.low holds %v, want %v", step.free, got, step.want)
		}
	}
}

// queue.deferred: raised above queue_deferred, cleared at half of it; queue.oldest: raised above
// queue_oldest, cleared below half of it, left alone when only held mail is old.
func TestQueueAlerts_Hysteresis(t *testing.T) {
	var free atomic.Uint64
	free.Store(1000)
	r := newIdleRelay(t, "queue_deferred = 4\nqueue_oldest = \"2h\"", &free)
	var ids []string
	for range 6 {
		w, err := r.store.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte("Subject: x\r\n\r\nx\r\n"))
		id, err := w.Commit(queue.Envelope{From: "a@relay.test"}, []queue.Recipient{{Addr: "b@example.org", State: queue.StateQueued}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	defer_ := func(n int) {
		for i, id := range ids {
			err := r.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
				if i < n && m.Recipients[0].State == queue.StateQueued {
					m.Recipients[0].State = queue.StateActive
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			_ = r.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
				if i < n && m.Recipients[0].State == queue.StateActive {
					m.Recipients[0].State = queue.StateDeferred
				}
				return nil
			})
		}
	}
	holds := func(e alerts.Event) bool { return r.alerts.Holds(e, "") }

	defer_(5)
	now := time.Now()
	r.queueAlerts(now)
	if !holds(alerts.EventQueueDeferred) || holds(alerts.EventQueueOldest) {
		t.Fatalf("5 deferred of limit 4, young mail: deferred %v oldest %v", holds(alerts.EventQueueDeferred), holds(alerts.EventQueueOldest))
	}
	r.queueAlerts(now.Add(3 * time.Hour))
	if !holds(alerts.EventQueueOldest) {
		t.Fatal("mail 3h old with queue_oldest 2h: queue.oldest not raised")
	}
	// 1h30m: below the threshold, above half of it: still holds.
	r.queueAlerts(now.Add(90 * time.Minute))
	if !holds(alerts.EventQueueOldest) {
		t.Fatal("queue.oldest cleared above half its threshold")
	}
	r.queueAlerts(now.Add(59 * time.Minute))
	if holds(alerts.EventQueueOldest) {
		t.Fatal("queue.oldest still holds below half its threshold")
	}
	// Deliver three: 2 deferred left, at half of 4: cleared. (3 left would have kept it.)
	for _, id := range ids[:3] {
		_ = r.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
			m.Recipients[0].State = queue.StateActive
			return nil
		})
		_ = r.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
			m.Recipients[0].State = queue.StateDelivered
			return nil
		})
	}
	r.queueAlerts(now)
	if holds(alerts.EventQueueDeferred) {
		t.Fatal("queue.deferred holds with 2 deferred of limit 4")
	}
	// Only held mail is old: that is the admin's choice, not a stuck queue.
	r.queueAlerts(now.Add(5 * time.Hour))
	if !holds(alerts.EventQueueOldest) {
		t.Fatal("mail 5h old did not raise queue.oldest")
	}
	if _, err := r.store.Hold(queue.Selector{All: true}); err != nil {
		t.Fatal(err)
	}
	r.queueAlerts(now.Add(5 * time.Hour))
	if holds(alerts.EventQueueOldest) {
		t.Fatal("held mail alone raised queue.oldest")
	}
}
