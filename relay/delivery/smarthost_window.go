package delivery

import (
	"time"
)

// Sending budgets (message_rate, recipient_rate) are sliding windows: "30/min" means no more than 30 in any 60
// seconds, which is what Microsoft 365 and Google count. A token bucket would not do: golang.org/x/time/rate with
// rate 30/min and burst 30 admits about 60 in the first minute (30 at once, then one every 2 s).
//
// eventLog counts what was sent, in buckets: one second wide for the last hour, one minute wide before that, up
// to a day (the longest window). A bucket counts in a window until its end has left the window, so a window is
// judged conservatively by at most one bucket's width: never more than the budget, sometimes one bucket later
// than exact. Memory stays bounded by the buckets (3,600 + 1,440), not by the number of messages.

const (
	fineWidth   = time.Second
	fineSpan    = time.Hour
	coarseWidth = time.Minute
	longestSpan = 24 * time.Hour
)

type bucket struct {
	start time.Time
	n     int
}

// eventLog is one host's count of one kind (messages or recipients) over the last day. Not safe for concurrent
// use: the host's lock guards it.
type eventLog struct {
	coarse []bucket // older than fineSpan, minute buckets, oldest first
	fine   []bucket // the last fineSpan, second buckets, oldest first
}

func (l *eventLog) add(at time.Time, n int) {
	if n == 0 {
		return
	}
	b := at.Truncate(fineWidth)
	if k := len(l.fine); k > 0 && !b.After(l.fine[k-1].start) {
		l.fine[k-1].n += n // the same second, or a clock that stepped back: the newest bucket takes it
		return
	}
	l.fine = append(l.fine, bucket{start: b, n: n})
}

// refund takes back n counted at at (a transaction the host never accepted): from the newest bucket that
// started at or before at.
func (l *eventLog) refund(at time.Time, n int) {
	for _, list := range [][]bucket{l.fine, l.coarse} {
		for i := len(list) - 1; i >= 0; i-- {
			if !list[i].start.After(at) {
				list[i].n = max(list[i].n-n, 0)
				return
			}
		}
	}
}

// prune moves second buckets older than fineSpan into minute buckets and drops what has left the longest window.
func (l *eventLog) prune(now time.Time) {
	cut := now.Add(-fineSpan)
	i := 0
	for ; i < len(l.fine) && l.fine[i].start.Add(fineWidth).Before(cut); i++ {
		m := l.fine[i].start.Truncate(coarseWidth)
		if k := len(l.coarse); k > 0 && !m.After(l.coarse[k-1].start) {
			l.coarse[k-1].n += l.fine[i].n
		} else {
			l.coarse = append(l.coarse, bucket{start: m, n: l.fine[i].n})
		}
	}
	l.fine = l.fine[i:]
	drop := now.Add(-longestSpan - coarseWidth)
	j := 0
	for j < len(l.coarse) && l.coarse[j].start.Before(drop) {
		j++
	}
	l.coarse = l.coarse[j:]
}

// each calls fn for every bucket, oldest first, with its start and end, until fn returns false.
func (l *eventLog) each(fn func(start, end time.Time, n int) bool) {
	for _, b := range l.coarse {
		if !fn(b.start, b.start.Add(coarseWidth), b.n) {
			return
		}
	}
	for _, b := range l.fine {
		if !fn(b.start, b.start.Add(fineWidth), b.n) {
			return
		}
	}
}

// sum is what counts in the window of length per ending now.
func (l *eventLog) sum(now time.Time, per time.Duration) int {
	from := now.Add(-per)
	total := 0
	l.each(func(_, end time.Time, n int) bool {
		if end.After(from) {
			total += n
		}
		return true
	})
	return total
}

// freesAt is the earliest time from now on at which need more fit into the window per with budget limit. A
// need larger than the budget fits once the window is empty.
func (l *eventLog) freesAt(now time.Time, per time.Duration, limit, need int) time.Time {
	used := l.sum(now, per)
	if used+need <= limit {
		return now
	}
	from := now.Add(-per)
	at := now
	l.each(func(_, end time.Time, n int) bool {
		if !end.After(from) || n == 0 {
			return true
		}
		used -= n
		at = end.Add(per)
		return used+need > limit && used > 0
	})
	return at
}

// empty reports a log with nothing left in it.
func (l *eventLog) empty() bool { return len(l.coarse) == 0 && len(l.fine) == 0 }

// minutes returns the log at minute resolution, for storage: [unix minute, count] pairs, oldest first.
func (l *eventLog) minutes() [][2]int64 {
	var out [][2]int64
	l.each(func(start, _ time.Time, n int) bool {
		m := start.Unix() / 60
		switch k := len(out); {
		case n == 0:
		case k > 0 && out[k-1][0] >= m:
			out[k-1][1] += int64(n)
		default:
			out = append(out, [2]int64{m, int64(n)})
		}
		return true
	})
	return out
}

// restore replaces the log with stored minute buckets, dropping those older than the longest window.
func (l *eventLog) restore(list [][2]int64, now time.Time) {
	l.coarse, l.fine = nil, nil
	for _, p := range list {
		start := time.Unix(p[0]*60, 0)
		if p[1] <= 0 || start.Before(now.Add(-longestSpan-coarseWidth)) || start.After(now) {
			continue
		}
		if k := len(l.coarse); k > 0 && !start.After(l.coarse[k-1].start) {
			l.coarse[k-1].n += int(p[1])
			continue
		}
		l.coarse = append(l.coarse, bucket{start: start, n: int(p[1])})
	}
}
