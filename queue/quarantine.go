package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Damaged records are quarantined when something reads them: the scheduler's Due (which reads every waiting
// message as it becomes due), an Update, an admin verb, a body whose spool file is gone, recovery after a
// crash, migration and compaction. Start-up does not read every record to find them (at 100,000 messages that
// was most of a 15-second cold start). A quarantined record is never delivered; it stays listed with its
// reason for the admin, and its body is kept.

// CorruptRecord is a record that did not decode (or lost its body): quarantined, or, when At is zero, found by
// a read that could not move it (a read-only Store, a listing).
type CorruptRecord struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// corruptEntry is the stored form in the corrupt bucket: the reason and the original bytes, for a human.
type corruptEntry struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Raw    []byte    `json:"raw"`
}

// Corrupt lists the quarantined records (the corrupt bucket only: damaged records not yet found are reported
// by Scan as it meets them).
func (s *Store) Corrupt() ([]CorruptRecord, error) {
	var out []CorruptRecord
	err := s.view(func(b buckets) error {
		c := b.corrupt.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e corruptEntry
			if err := json.Unmarshal(v, &e); err != nil {
				e.Reason = "quarantine entry unreadable: " + err.Error()
			}
			out = append(out, CorruptRecord{Key: string(k), Reason: e.Reason, At: e.At})
		}
		return nil
	})
	return out, err
}

// quarantineIn moves the record under key to the corrupt bucket with reason, inside a write transaction. A
// record that still decodes (its spool file is gone) leaves its index entries and counts exactly; one that does
// not cannot: its due entry is searched for, and needRecount tells the caller to recount once it is done.
// Nothing under key: nothing to do.
func quarantineIn(b buckets, key []byte, reason string, now time.Time) (moved, needRecount bool, err error) {
	raw := b.msgs.Get(key)
	if raw == nil {
		return false, false, nil
	}
	raw = bytes.Clone(raw)
	e, err := json.Marshal(corruptEntry{Reason: reason, At: now, Raw: raw})
	if err != nil {
		return false, false, err
	}
	if err := b.corrupt.Put(bytes.Clone(key), e); err != nil {
		return false, false, err
	}
	if err := b.msgs.Delete(key); err != nil {
		return false, false, err
	}
	if err := b.active.Delete(key); err != nil {
		return false, false, err
	}
	r, derr := decodeRecord(key, raw)
	if derr != nil {
		return true, true, dropDueOf(b, key)
	}
	if k := dueKey(&r.Message); k != nil {
		if err := b.due.Delete(k); err != nil {
			return false, false, err
		}
	}
	var d counts
	d.add(&r.Message, -1)
	d.corrupt = 1
	return true, false, changeCounts(b, d)
}

// damage is a record found damaged by a read: it does not decode, or (spool) its body file is gone.
type damage struct {
	key   string
	spool bool
}

// stillDamaged checks d again inside the write transaction and returns the quarantine reason, or "" when the
// record is gone or sound now.
func (s *Store) stillDamaged(b buckets, d damage) string {
	raw := b.msgs.Get([]byte(d.key))
	if raw == nil {
		return ""
	}
	r, err := decodeRecord([]byte(d.key), raw)
	if err != nil {
		return err.Error()
	}
	if d.spool && r.Spooled {
		if _, err := os.Stat(s.spoolPath(d.key)); errors.Is(err, os.ErrNotExist) {
			return "spool file missing: " + err.Error()
		}
	}
	return ""
}

// quarantine moves damaged records to the corrupt bucket in one transaction, and drops the due-index keys in
// stale that no longer point at a waiting message (the message is gone, damaged, or indexed under another
// time). Each is checked again inside the transaction, so a record repaired or rewritten meanwhile is left
// alone. A read-only Store does nothing.
func (s *Store) quarantine(bad []damage, stale [][]byte) {
	if s.readOnly || (len(bad) == 0 && len(stale) == 0) {
		return
	}
	type movedRecord struct{ key, reason string }
	var moved []movedRecord
	err := s.submit(&request{fn: func(tx *bolt.Tx) error {
		moved = nil
		b := bucketsOf(tx)
		now := s.now()
		recountNeeded := false
		for _, d := range bad {
			reason := s.stillDamaged(b, d)
			if reason == "" {
				continue
			}
			ok, rc, err := quarantineIn(b, []byte(d.key), reason, now)
			if err != nil {
				return err
			}
			if ok {
				moved = append(moved, movedRecord{d.key, reason})
			}
			recountNeeded = recountNeeded || rc
		}
		for _, k := range stale {
			if err := dropStaleDue(b, k); err != nil {
				return err
			}
		}
		if recountNeeded {
			return recount(b)
		}
		return nil
	}})
	if err != nil {
		s.log.Error("cannot quarantine damaged records", "err", err)
		return
	}
	for _, d := range moved {
		s.log.Error("record quarantined", "key", d.key, "reason", d.reason)
	}
}

// dropDueOf deletes the due-index keys of id, whose due time is unknown: a walk over the index's keys, which only
// quarantine of an undecodable record needs.
func dropDueOf(b buckets, id []byte) error {
	var keys [][]byte
	c := b.due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) > dueTimeLen && bytes.Equal(k[dueTimeLen:], id) {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		if err := b.due.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// dropStaleDue deletes a due-index key unless it is exactly the key its message calls for.
func dropStaleDue(b buckets, k []byte) error {
	_, id, ok := splitDueKey(k)
	if ok {
		if raw := b.msgs.Get([]byte(id)); raw != nil {
			if r, err := decodeRecord([]byte(id), raw); err == nil && bytes.Equal(dueKey(&r.Message), k) {
				return nil
			}
		}
	}
	return b.due.Delete(k)
}

// damagedIn returns the damaged record an error names, if any.
func damagedIn(err error) (damage, bool) {
	var d *damagedError
	if errors.As(err, &d) {
		return damage{key: d.key}, true
	}
	return damage{}, false
}
