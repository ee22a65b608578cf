package metrics

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ptrelay/internal/testkit"
)

// serve starts the real /metrics endpoint on loopback and returns its URL.
func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, "the /metrics server", func(ctx context.Context) error { return m.ServeListener(ctx, ln) })
	return "http://" + ln.Addr().String() + "/metrics"
}

type scrape map[string]*dto.MetricFamily

func scrapeText(t *testing.T, url string) scrape {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// find returns the sample of name whose labels include all of want, or nil.
func (s scrape) find(name string, want map[string]string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value; a missing series counts as 0 (a counter never touched).
func (s scrape) value(name string, labels map[string]string) float64 {
	m := s.find(name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

func TestMetrics_CountersMoveByTheRightAmounts(t *testing.T) {
	m := New()
	url := serve(t, m)
	before := scrapeText(t, url)

	m.Accepted(1000)
	m.Accepted(500)
	m.Refused("relay_denied")
	m.Refused("relay_denied")
	m.Refused("too_big")
	m.SessionDelta(1)
	m.SessionDelta(1)
	m.SessionDelta(1)
	m.SessionDelta(-1)
	m.Delivery("direct", "sent", 300*time.Millisecond)
	m.Delivery("direct", "deferred", 1500*time.Millisecond)
	m.Delivery("smarthost", "sent", 40*time.Millisecond)
	m.Reroute("gmail_5.7.25")
	m.DKIM(true, "")
	m.DKIM(true, "")
	m.DKIM(false, "no_key")

	after := scrapeText(t, url)
	cases := []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"ptrelay_messages_accepted_total", nil, 2},
		{"ptrelay_messages_accepted_bytes_total", nil, 1500},
		{"ptrelay_messages_refused_total", map[string]string{"reason": "relay_denied"}, 2},
		{"ptrelay_messages_refused_total", map[string]string{"reason": "too_big"}, 1},
		{"ptrelay_inbound_sessions", nil, 2},
		{"ptrelay_inbound_sessions_total", nil, 3},
		{"ptrelay_deliveries_total", map[string]string{"route": "direct", "outcome": "sent"}, 1},
		{"ptrelay_deliveries_total", map[string]string{"route": "direct", "outcome": "deferred"}, 1},
		{"ptrelay_deliveries_total", map[string]string{"route": "smarthost", "outcome": "sent"}, 1},
		{"ptrelay_deliveries_total", map[string]string{"route": "smarthost", "outcome": "bounced"}, 0},
		{"ptrelay_reroutes_total", map[string]string{"reason": "gmail_5.7.25"}, 1},
		{"ptrelay_dkim_signed_total", nil, 2},
		{"ptrelay_dkim_unsigned_total", map[string]string{"reason": "no_key"}, 1},
	}
	for _, c := range cases {
		if d := after.value(c.name, c.labels) - before.value(c.name, c.labels); d != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, d, c.delta)
		}
	}

	h := after.find("ptrelay_delivery_duration_seconds", map[string]string{"route": "direct"})
	if h == nil || h.Histogram == nil {
		t.Fatal("no histogram ptrelay_delivery_duration_seconds{route=direct}")
	}
	if got := h.GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("direct duration count %d, want 2", got)
	}
	if got := h.GetHistogram().GetSampleSum(); math.Abs(got-1.8) > 1e-9 {
		t.Errorf("direct duration sum %v, want 1.8", got)
	}
	for _, b := range h.GetHistogram().GetBucket() {
		want := map[float64]uint64{0.25: 0, 0.5: 1, 1: 1, 2.5: 2}
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if after.find("go_goroutines", nil) == nil || after.find("process_cpu_seconds_total", nil) == nil {
		t.Error("the Go and process collectors are missing")
	}
}

func TestMetrics_QueueGauges(t *testing.T) {
	m := New()
	url := serve(t, m)
	if s := scrapeText(t, url); s["ptrelay_queue_recipients"] != nil {
		t.Error("queue gauges exported before the relay attached the queue")
	}
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	m.queue.now = func() time.Time { return now }
	oldest := now.Add(-90 * time.Second)
	m.SetQueueStats(func() (map[string]int, time.Time) {
		return map[string]int{"queued": 3, "deferred": 2, "odd": 1}, oldest
	})
	s := scrapeText(t, url)
	for state, want := range map[string]float64{"queued": 3, "deferred": 2, "hold": 0, "active": 0, "odd": 1} {
		m := s.find("ptrelay_queue_recipients", map[string]string{"state": state})
		if m == nil {
			t.Errorf("no series for state %s", state)
			continue
		}
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("state %s: %v, want %v", state, got, want)
		}
	}
	if got := s.value("ptrelay_queue_oldest_message_age_seconds", nil); got != 90 {
		t.Errorf("oldest age %v, want 90", got)
	}

	m.SetQueueStats(func() (map[string]int, time.Time) { return map[string]int{}, time.Time{} })
	s = scrapeText(t, url)
	if got := s.value("ptrelay_queue_oldest_message_age_seconds", nil); got != 0 {
		t.Errorf("empty queue: oldest age %v, want 0", got)
	}
	if got := s.find("ptrelay_queue_recipients", map[string]string{"state": "queued"}); got == nil || got.GetGauge().GetValue() != 0 {
		t.Errorf("empty queue: queued series %v, want 0", got)
	}

	m.SetQueueStats(func() (map[string]int, time.Time) { return nil, time.Time{} })
	s = scrapeText(t, url)
	if s["ptrelay_queue_recipients"] != nil || s["ptrelay_queue_oldest_message_age_seconds"] != nil {
		t.Error("an unreadable queue (nil map) was reported as numbers")
	}
}

func TestMetrics_VerdictIsOneForTheCurrentOnly(t *testing.T) {
	m := New()
	url := serve(t, m)
	m.SetVerdict("ipv4", "direct-ok")
	m.SetVerdict("ipv6", "smarthost")
	m.SetVerdict("ipv4", "smarthost")
	s := scrapeText(t, url)
	want := []struct {
		family, verdict string
		v               float64
	}{
		{"ipv4", "direct-ok", 0},
		{"ipv4", "smarthost", 1},
		{"ipv6", "smarthost", 1},
	}
	for _, w := range want {
		m := s.find("ptrelay_egress_verdict", map[string]string{"family": w.family, "verdict": w.verdict})
		if m == nil || m.GetGauge().GetValue() != w.v {
			t.Errorf("egress_verdict{%s,%s} = %v, want %v", w.family, w.verdict, m, w.v)
		}
	}
	if n := len(s["ptrelay_egress_verdict"].GetMetric()); n != 3 {
		t.Errorf("%d verdict series, want 3", n)
	}
}

func TestMetrics_NilIsNoop(t *testing.T) {
	var m *Metrics
	m.Accepted(1)
	m.Refused("x")
	m.SessionDelta(1)
	m.Delivery("direct", "sent", time.Second)
	m.Reroute("x")
	m.DKIM(true, "")
	m.SetVerdict("ipv4", "direct-ok")
	m.SetQueueStats(nil)
}

func TestMetrics_ServeReportsBindFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := New().Serve(ctx, ln.Addr().String()); err == nil {
		t.Fatal("Serve on a taken address returned nil")
	}
}

// TestMetrics_Smarthosts: the smart hosts' gauges are read at each scrape (up, limited, what each window still
// allows); their deliveries are counted by host and outcome.
func TestMetrics_Smarthosts(t *testing.T) {
	m := New()
	url := serve(t, m)
	if s := scrapeText(t, url); s["ptrelay_smarthost_up"] != nil {
		t.Errorf("gauges before the daemon attached its smart hosts")
	}
	state := []SmarthostGauge{
		{Name: "m365", Up: true, Limited: true, Budgets: []BudgetGauge{{Window: "msg 1m", Remaining: 0}, {Window: "rcpt 24h", Remaining: 2588}}},
		{Name: "isp", Up: false},
	}
	m.SetSmarthosts(func() []SmarthostGauge { return state })
	m.SmarthostDelivery("m365", "sent")
	m.SmarthostDelivery("m365", "sent")
	m.SmarthostDelivery("isp", "deferred")
	m.SmarthostDelivery("", "sent") // direct delivery: not a smart host's
	s := scrapeText(t, url)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ptrelay_smarthost_up", map[string]string{"name": "m365"}, 1},
		{"ptrelay_smarthost_up", map[string]string{"name": "isp"}, 0},
		{"ptrelay_smarthost_limited", map[string]string{"name": "m365"}, 1},
		{"ptrelay_smarthost_limited", map[string]string{"name": "isp"}, 0},
		{"ptrelay_smarthost_budget_remaining", map[string]string{"name": "m365", "window": "rcpt 24h"}, 2588},
		{"ptrelay_smarthost_budget_remaining", map[string]string{"name": "m365", "window": "msg 1m"}, 0},
		{"ptrelay_smarthost_deliveries_total", map[string]string{"name": "m365", "outcome": "sent"}, 2},
		{"ptrelay_smarthost_deliveries_total", map[string]string{"name": "isp", "outcome": "deferred"}, 1},
	} {
		if s.find(c.name, c.labels) == nil {
			t.Errorf("no %s%v", c.name, c.labels)
		} else if got := s.value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if f := s["ptrelay_smarthost_deliveries_total"]; f != nil && len(f.GetMetric()) != 2 {
		t.Errorf("%d delivery series, want 2 (none for direct delivery)", len(f.GetMetric()))
	}
}
