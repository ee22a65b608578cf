package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Read side, for the CLI (queue list/show), the admin socket and metrics. Every read is one bbolt read
// transaction; a read-only Store (offline inspection) answers the same way. Records that do not decode are not
// messages: they appear under Corrupt (the quarantine, plus, on a read-only Store that cannot move them,
// the live ones found during the read).

// List returns every message, oldest first (IDs sort by arrival).
func (s *Store) List() ([]*Message, error) {
	var out []*Message
	err := s.view(func(b buckets) error {
		c := b.msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if r, err := decodeRecord(k, v); err == nil {
				out = append(out, &r.Message)
			}
		}
		return nil
	})
	return out, err
}

// Get returns a copy of one message; an unknown ID wraps ErrNotFound.
func (s *Store) Get(id string) (*Message, error) {
	var m *Message
	err := s.view(func(b buckets) error {
		r, err := load(b, id)
		if err == nil {
			m = &r.Message
		}
		return err
	})
	return m, err
}

// Body opens a message's stored body (with the headers the relay prepended). The caller closes it. A spool file
// stays readable after the message is removed while it is open.
func (s *Store) Body(id string) (io.ReadCloser, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a queue ID", ErrNotFound, id)
	}
	var inline []byte
	var spooled bool
	err := s.view(func(b buckets) error {
		r, err := load(b, id)
		if err != nil {
			return err
		}
		spooled = r.Spooled
		if !spooled {
			v := b.bodies.Get([]byte(id))
			if v == nil && r.Size > 0 {
				return storageErr("read body "+id, errors.New("inline body missing"))
			}
			inline = bytes.Clone(v) // v points into the mmap, valid only inside the transaction
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !spooled {
		return io.NopCloser(bytes.NewReader(inline)), nil
	}
	f, err := os.Open(s.spoolPath(id))
	if errors.Is(err, os.ErrNotExist) {
		// Removed between the read transaction and the open: the message was just finished or deleted.
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, storageErr("open body "+id, err)
	}
	return f, nil
}

// CorruptRecord is a quarantined record that did not decode.
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

// Corrupt lists quarantined records. On a read-only Store it also lists live records that do not decode
// (At is zero for those: they are not quarantined yet).
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
		c = b.msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if _, err := decodeRecord(k, v); err != nil {
				out = append(out, CorruptRecord{Key: string(k), Reason: err.Error()})
			}
		}
		return nil
	})
	return out, err
}

// Stats is a summary for status and metrics.
type Stats struct {
	Messages      int           `json:"messages"`
	ByState       map[State]int `json:"by_state"` // recipients per state
	OldestArrival time.Time     `json:"oldest_arrival,omitzero"`
	Corrupt       int           `json:"corrupt"` // quarantined plus live records that do not decode
}

// Stats counts the queue.
func (s *Store) Stats() (Stats, error) {
	st := Stats{ByState: map[State]int{}}
	err := s.view(func(b buckets) error {
		st.Corrupt = b.corrupt.Stats().KeyN
		c := b.msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := decodeRecord(k, v)
			if err != nil {
				st.Corrupt++
				continue
			}
			st.Messages++
			if st.OldestArrival.IsZero() || r.Arrival.Before(st.OldestArrival) {
				st.OldestArrival = r.Arrival
			}
			for _, rc := range r.Recipients {
				st.ByState[rc.State]++
			}
		}
		return nil
	})
	return st, err
}
