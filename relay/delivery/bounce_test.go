package delivery

import (
	"testing"
	"time"

	"ptrelay/queue"
)

func TestWantsDSN(t *testing.T) {
	cases := []struct {
		notify []string
		kind   string
		want   bool
	}{
		{nil, "FAILURE", true},
		{nil, "DELAY", true},
		{[]string{"NEVER"}, "FAILURE", false},
		{[]string{"never"}, "DELAY", false},
		{[]string{"SUCCESS"}, "FAILURE", false},
		{[]string{"FAILURE"}, "FAILURE", true},
		{[]string{"FAILURE"}, "DELAY", false},
		{[]string{"SUCCESS", "delay"}, "DELAY", true},
	}
	for _, c := range cases {
		if got := wantsDSN(c.notify, c.kind); got != c.want {
			t.Errorf("wantsDSN(%v, %s) = %v, want %v", c.notify, c.kind, got, c.want)
		}
	}
}

func TestDSNAllowed(t *testing.T) {
	for _, c := range []struct {
		env  queue.Envelope
		want bool
	}{
		{queue.Envelope{From: "a@b.test"}, true},
		{queue.Envelope{From: ""}, false},
		{queue.Envelope{From: "a@b.test", IsDSN: true}, false},
	} {
		if got := dsnAllowed(&queue.Message{Envelope: c.env}); got != c.want {
			t.Errorf("dsnAllowed(%+v) = %v", c.env, got)
		}
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0.0",
		-time.Second:                          "0.0",
		1250 * time.Millisecond:               "1.2",
		9900 * time.Millisecond:               "9.9",
		10 * time.Second:                      "10",
		90*time.Second + 700*time.Millisecond: "90",
	} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %q, want %q", d, got, want)
		}
	}
}
