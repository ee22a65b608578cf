package queue

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Commit makes the message durable and returns its ID (unique, sortable by time). It returns only after the
// body (spool file fsync'd, renamed, directory fsync'd; or inline) and the record with its due-index entry are
// committed by a fsync'd bbolt transaction shared with concurrent commits (group commit, no batching timer).
// Every recipient must be StateQueued; NextAttempt zero means "now". On error nothing is left behind: storage
// failures wrap ErrStorage (the inbound side answers 451 4.3.0); bad arguments are plain errors.
func (w *Writer) Commit(env Envelope, rcpts []Recipient) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.done {
		return "", errWriterDone
	}
	w.done = true
	if err := checkNew(rcpts); err != nil {
		w.discard()
		return "", err
	}
	s := w.s
	id := s.ids.next()
	spooled := w.f != nil
	if spooled {
		if err := w.finishSpool(id); err != nil {
			w.err = err
			return "", err
		}
	}
	rec := newRecord(id, s.now(), w.size, env, rcpts, spooled)
	body := w.buf
	if body == nil {
		body = []byte{}
	}
	err := s.submit(&request{
		syncSpool: spooled,
		fn: func(tx *bolt.Tx) error {
			b := bucketsOf(tx)
			if b.msgs.Get([]byte(id)) != nil {
				return storageErr("commit", fmt.Errorf("ID %s already in use", id))
			}
			if !spooled {
				if err := b.bodies.Put([]byte(id), body); err != nil {
					return storageErr("put body "+id, err)
				}
			}
			_, err := write(b, nil, rec)
			return err
		},
	})
	// submit returns only once the request is settled for good (committed, or failed after every rerun), so no
	// run of fn can still read body.
	w.releaseBuf()
	if err != nil {
		if spooled {
			s.removeSpool(id)
		}
		w.err = err
		return "", err
	}
	s.wake()
	return id, nil
}

// checkNew validates the recipients of a new message.
func checkNew(rcpts []Recipient) error {
	if len(rcpts) == 0 {
		return errors.New("queue: a message needs at least one recipient")
	}
	for i, r := range rcpts {
		if r.State != StateQueued {
			return fmt.Errorf("queue: new recipient %d (%s) has state %q, want %q", i, r.Addr, r.State, StateQueued)
		}
	}
	return nil
}

// newRecord builds the stored form of a new message. The recipients are copied so the caller's slice is never
// aliased by a record that is encoded later (a batch may be re-run).
func newRecord(id string, now time.Time, size int64, env Envelope, rcpts []Recipient, spooled bool) *record {
	rs := make([]Recipient, len(rcpts))
	copy(rs, rcpts)
	for i := range rs {
		if rs[i].NextAttempt.IsZero() {
			rs[i].NextAttempt = now
		}
	}
	return &record{
		Message: Message{ID: id, Arrival: now, Size: size, Envelope: env, Recipients: rs},
		Spooled: spooled,
	}
}
