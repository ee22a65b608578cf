package delivery

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const m, h = time.Minute, time.Hour
	cases := []struct {
		name     string
		attempts int
		min, max time.Duration
		jitter   func(int64) int64
		want     time.Duration
	}{
		{"first retry is retry_min", 1, 5 * m, h, nil, 5 * m},
		{"zero attempts is retry_min", 0, 5 * m, h, nil, 5 * m},
		{"doubles", 2, 5 * m, h, nil, 10 * m},
		{"doubles again", 4, 5 * m, h, nil, 40 * m},
		{"capped at retry_max", 5, 5 * m, h, nil, h},
		{"huge attempt count stays capped", 1 << 30, 5 * m, h, nil, h},
		{"max below min uses min", 3, 5 * m, m, nil, 5 * m},
		{"zero min is one second", 1, 0, h, nil, time.Second},
		{"seconds for tests", 3, time.Second, 10 * time.Second, nil, 4 * time.Second},
		{"jitter lowest is -10%", 1, 10 * m, h, func(int64) int64 { return 0 }, 9 * m},
		{"jitter highest is +10%", 1, 10 * m, h, func(n int64) int64 { return n - 1 }, 11 * m},
		{"jitter middle is exact", 1, 10 * m, h, func(n int64) int64 { return n / 2 }, 10 * m},
		{"max near overflow", 70, time.Nanosecond, time.Duration(1<<62 + 1), nil, time.Duration(1<<62 + 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Backoff(c.attempts, c.min, c.max, c.jitter); got != c.want {
				t.Errorf("Backoff(%d, %v, %v) = %v, want %v", c.attempts, c.min, c.max, got, c.want)
			}
		})
	}
}
