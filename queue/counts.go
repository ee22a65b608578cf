package queue

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The queue keeps its own counts (messages, recipients per state, quarantined records) in the meta bucket,
// changed by write (record.go) in the same transaction as the records they count, so Stats reads one key
// instead of decoding every record: at 100,000 queued messages the scan took 0.8 s per `ptrelay status` and
// every metrics scrape. A record quarantined because it no longer decodes cannot be subtracted (what it held
// is unknown), so quarantine recounts from the records (recount), which is rare and costs one scan.

// counts is the stored summary. byState follows allStates.
type counts struct {
	messages int64
	byState  [numStates]int64
	corrupt  int64
}

const numStates = 6

// countsLen is the stored size: messages, the six states, corrupt; 8 bytes each, big-endian.
const countsLen = 8 * (2 + numStates)

var keyCounts = []byte("counts")

func stateIndex(s State) int {
	for i, v := range allStates {
		if v == s {
			return i
		}
	}
	return -1
}

func (c *counts) add(m *Message, sign int64) {
	c.messages += sign
	for _, r := range m.Recipients {
		if i := stateIndex(r.State); i >= 0 {
			c.byState[i] += sign
		}
	}
}

func (c *counts) zero() bool { return *c == counts{} }

func (c *counts) plus(d counts) {
	c.messages += d.messages
	c.corrupt += d.corrupt
	for i := range c.byState {
		c.byState[i] += d.byState[i]
	}
}

func (c *counts) encode() []byte {
	b := make([]byte, 0, countsLen)
	b = binary.BigEndian.AppendUint64(b, uint64(c.messages))
	for _, n := range c.byState {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return binary.BigEndian.AppendUint64(b, uint64(c.corrupt))
}

func decodeCounts(b []byte) (counts, error) {
	var c counts
	if len(b) != countsLen {
		return c, fmt.Errorf("queue counts are %d bytes, want %d", len(b), countsLen)
	}
	next := func() int64 {
		v := int64(binary.BigEndian.Uint64(b))
		b = b[8:]
		return v
	}
	c.messages = next()
	for i := range c.byState {
		c.byState[i] = next()
	}
	c.corrupt = next()
	return c, nil
}

// readCounts returns the stored counts; ok is false when there are none (a schema 1 database opened read-only,
// which cannot be migrated).
func readCounts(b buckets) (counts, bool, error) {
	v := b.meta.Get(keyCounts)
	if v == nil {
		return counts{}, false, nil
	}
	c, err := decodeCounts(v)
	return c, err == nil, err
}

// changeCounts adds d to the stored counts.
func changeCounts(b buckets, d counts) error {
	if d.zero() {
		return nil
	}
	c, _, err := readCounts(b)
	if err != nil {
		return err
	}
	c.plus(d)
	return b.meta.Put(keyCounts, c.encode())
}

// scanCounts counts every record: decodable ones as messages, the others with the quarantined ones as corrupt.
// It also returns the arrival of the first message.
func scanCounts(b buckets) (counts, time.Time) {
	var c counts
	var first time.Time
	cur := b.msgs.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		r, err := decodeRecord(k, v)
		if err != nil {
			c.corrupt++
			continue
		}
		if c.messages == 0 {
			first = r.Arrival
		}
		c.add(&r.Message, 1)
	}
	cc := b.corrupt.Cursor()
	for k, _ := cc.First(); k != nil; k, _ = cc.Next() {
		c.corrupt++
	}
	return c, first
}

// recount replaces the stored counts by a scan of the records. Records that do not decode must already have
// been quarantined (they would otherwise be counted twice once they are).
func recount(b buckets) error {
	c, _ := scanCounts(b)
	return b.meta.Put(keyCounts, c.encode())
}

// Stats is a summary for status and metrics.
type Stats struct {
	Messages      int           `json:"messages"`
	ByState       map[State]int `json:"by_state"` // recipients per state
	OldestArrival time.Time     `json:"oldest_arrival,omitzero"`
	Corrupt       int           `json:"corrupt"` // quarantined records
}

// Stats returns the queue's counts without reading every record: the stored counts, and the arrival of the
// message with the smallest ID, which is the one accepted first. A database of the previous schema opened
// read-only has no counts yet and is scanned instead. Records damaged since they were written are counted as
// messages until something reads them and quarantines them (due mail at once, the rest when listed or acted
// on).
func (s *Store) Stats() (Stats, error) {
	st := Stats{ByState: map[State]int{}}
	err := s.view(func(b buckets) error {
		c, ok, err := readCounts(b)
		if err != nil {
			return storageErr("read counts", err)
		}
		if !ok {
			c, st.OldestArrival = scanCounts(b)
		} else {
			st.OldestArrival = firstArrival(b)
		}
		st.Messages, st.Corrupt = int(c.messages), int(c.corrupt)
		for i, n := range c.byState {
			if n != 0 {
				st.ByState[allStates[i]] = int(n)
			}
		}
		return nil
	})
	return st, err
}

// firstArrival is the arrival of the first record that decodes, in ID order; zero when there is none. It stops
// at a bound so a long run of damaged records cannot turn it into a scan.
func firstArrival(b buckets) time.Time {
	c := b.msgs.Cursor()
	n := 0
	for k, v := c.First(); k != nil && n < 64; k, v = c.Next() {
		if r, err := decodeRecord(k, v); err == nil {
			return r.Arrival
		}
		n++
	}
	return time.Time{}
}
