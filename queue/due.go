package queue

import (
	"bytes"
	"encoding/binary"
	"time"
)

// The due index has one key per message that has a recipient waiting (StateQueued or StateDeferred): 8 bytes of
// big-endian Unix nanoseconds of the earliest waiting NextAttempt, then the ID. A cursor therefore walks
// messages in the order they become due, and the first key is the next wake-up time. Active and held
// recipients are not waiting; final ones are gone. A recipient marked BounceNow counts as due at time 0, so an
// admin bounce is handled before any other work. write (record.go) is the only code that changes the index.

const dueTimeLen = 8

// dueAt is the time a message becomes due, in Unix nanoseconds, and whether it has a waiting recipient at all.
// A zero NextAttempt means "now", which sorts first.
func dueAt(m *Message) (int64, bool) {
	var at int64
	found := false
	for _, r := range m.Recipients {
		if r.State != StateQueued && r.State != StateDeferred {
			continue
		}
		t := unixNanos(r.NextAttempt)
		if r.BounceNow {
			t = 0
		}
		if !found || t < at {
			at, found = t, true
		}
	}
	return at, found
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 0)
}

// dueKey is m's key in the due index, or nil when nothing of m is waiting.
func dueKey(m *Message) []byte {
	at, ok := dueAt(m)
	if !ok {
		return nil
	}
	k := make([]byte, dueTimeLen, dueTimeLen+len(m.ID))
	binary.BigEndian.PutUint64(k, uint64(at))
	return append(k, m.ID...)
}

// splitDueKey returns the due time and ID of an index key.
func splitDueKey(k []byte) (int64, string, bool) {
	if len(k) <= dueTimeLen {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k)), string(k[dueTimeLen:]), true
}

// Due returns up to max messages that have at least one recipient in StateQueued or StateDeferred whose
// NextAttempt <= now (or with BounceNow set), earliest first. It also keeps the index honest, since it is what
// reads every waiting message sooner or later: a record that does not decode is quarantined, and an index key
// whose message is gone or is due at another time is dropped (on a read-only Store both are only skipped).
func (s *Store) Due(now time.Time, max int) ([]*Message, error) {
	var (
		out   []*Message
		bad   []damage
		stale [][]byte
	)
	limit := unixNanos(now)
	err := s.view(func(b buckets) error {
		c := b.due.Cursor()
		for k, _ := c.First(); k != nil && len(out) < max; k, _ = c.Next() {
			at, id, ok := splitDueKey(k)
			if !ok {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			if at > limit {
				break
			}
			r, err := load(b, id)
			if d, isBad := damagedIn(err); isBad {
				bad = append(bad, d)
				stale = append(stale, bytes.Clone(k))
				continue
			}
			if err != nil || !bytes.Equal(dueKey(&r.Message), k) {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			out = append(out, &r.Message)
		}
		return nil
	})
	if err == nil {
		s.quarantine(bad, stale)
	}
	return out, err
}

// NextDue returns the earliest NextAttempt of any recipient waiting in StateQueued or StateDeferred. A
// recipient due "now" (zero NextAttempt or BounceNow) gives the zero time, which is before any clock reading.
func (s *Store) NextDue() (time.Time, bool, error) {
	var at time.Time
	var found bool
	err := s.view(func(b buckets) error {
		k, _ := b.due.Cursor().First()
		ns, _, ok := splitDueKey(k)
		if !ok {
			return nil
		}
		found = true
		if ns > 0 {
			at = time.Unix(0, ns)
		}
		return nil
	})
	return at, found, err
}
