package queue

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tx is handed to Update's function to add small messages (DSNs) in the same transaction. It is valid only
// during that call.
type Tx struct {
	s     *Store
	b     buckets
	now   time.Time
	added int
	files []string // spool files written by this run, removed if the run is rolled back
}

// Enqueue adds a new message with an in-memory body in the transaction of the surrounding Update; its ID is
// returned. The message exists only if the Update commits. A body larger than InlineMax is written to a spool
// file (fsync'd) at once and removed again if the transaction does not commit.
func (tx *Tx) Enqueue(env Envelope, rcpts []Recipient, body []byte) (string, error) {
	if err := checkNew(rcpts); err != nil {
		return "", err
	}
	s := tx.s
	id := s.ids.next()
	if tx.b.msgs.Get([]byte(id)) != nil {
		return "", storageErr("enqueue", fmt.Errorf("ID %s already in use", id))
	}
	spooled := int64(len(body)) > s.inlineMax
	if spooled {
		if err := s.writeSpoolFile(id, body); err != nil {
			return "", err
		}
		tx.files = append(tx.files, id)
	} else {
		// bbolt keeps the slice until the commit; the caller may reuse its own.
		if err := tx.b.bodies.Put([]byte(id), append([]byte{}, body...)); err != nil {
			return "", storageErr("put body "+id, err)
		}
	}
	if _, err := write(tx.b, nil, newRecord(id, tx.now, int64(len(body)), env, rcpts, spooled)); err != nil {
		return "", err
	}
	tx.added++
	return id, nil
}

// Update loads message id, calls fn on a fresh copy, checks that every recipient state change fn made is a
// legal transition (transition.go), re-indexes due times and commits (fsync'd, group commit). When every
// recipient is final after fn, the message and its body are removed. fn may run more than once (a batch
// retried after another member failed): it must be idempotent and have no side effects outside m and tx; each
// run gets a fresh copy, so "Attempts++" counts once. An error from fn is returned as it is and nothing is
// written; a missing message wraps ErrNotFound; an illegal change wraps ErrIllegalTransition; a storage failure
// wraps ErrStorage (a record that no longer decodes is one, and is quarantined). fn runs on the commit goroutine
// inside the write transaction: it must be quick and must not call the Store's methods (only tx's), or it
// deadlocks.
func (s *Store) Update(id string, fn func(m *Message, tx *Tx) error) error {
	var (
		tx      *Tx
		removed bool
		spooled bool
		dueNow  bool
	)
	err := s.submit(&request{
		fn: func(btx *bolt.Tx) error {
			b := bucketsOf(btx)
			old, err := load(b, id)
			if err != nil {
				return err
			}
			nw := old.clone() // fn changes this one; old stays as stored
			tx = &Tx{s: s, b: b, now: s.now()}
			if err := fn(&nw.Message, tx); err != nil {
				return err
			}
			nw.Spooled = old.Spooled // where the body lives is not fn's business
			if err := settle(&old.Message, &nw.Message); err != nil {
				return err
			}
			if removed, err = write(b, old, nw); err != nil {
				return err
			}
			spooled = old.Spooled
			at, ok := dueAt(&nw.Message)
			dueNow = !removed && ok && at <= unixNanos(tx.now)
			return nil
		},
		undo: func() {
			if tx != nil {
				for _, f := range tx.files {
					s.removeSpool(f)
				}
				tx.files = nil
			}
		},
	})
	if d, ok := damagedIn(err); ok {
		s.quarantine([]damage{d}, nil)
	}
	if err != nil {
		return err
	}
	if removed && spooled {
		s.removeSpool(id)
	}
	if dueNow || tx.added > 0 {
		s.wake()
	}
	return nil
}
