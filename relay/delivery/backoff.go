package delivery

import "time"

// Backoff returns the wait before the next attempt after attempts failed attempts (attempts >= 1): retryMin,
// doubled per further attempt, capped at retryMax, then spread by up to +-10% with jitter so that a batch of
// mail deferred together (a destination that was down) does not come back as one burst. jitter returns a value
// in [0, n) (math/rand/v2's Int64N); nil means no jitter, which tests use.
//
// All arithmetic is on integer time.Durations, doubling with an explicit cap check instead of a float power,
// so a large attempt count can neither overflow nor truncate to zero.
func Backoff(attempts int, retryMin, retryMax time.Duration, jitter func(n int64) int64) time.Duration {
	if retryMin <= 0 {
		retryMin = time.Second
	}
	if retryMax < retryMin {
		retryMax = retryMin
	}
	d := retryMin
	for i := 1; i < attempts && d < retryMax; i++ {
		if d > retryMax/2 {
			d = retryMax
			break
		}
		d *= 2
	}
	if d > retryMax {
		d = retryMax
	}
	if jitter != nil {
		spread := d / 10
		if spread > 0 {
			d += time.Duration(jitter(int64(2*spread+1))) - spread
		}
	}
	return d
}
