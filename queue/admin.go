package queue

import (
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Selector picks messages for the admin verbs: the IDs given, or every message.
type Selector struct {
	IDs []string
	All bool
}

// The admin verbs share one shape (mox's Filter): select messages, change each in one transaction through
// settle and write, so the transition table and the due index apply to the admin exactly as to delivery. Each
// returns how many messages it changed. IDs that name no message are reported together in one error wrapping
// ErrNotFound after the known ones were handled.

// Delete removes the selected messages without a bounce; it returns how many it removed.
func (s *Store) Delete(sel Selector) (int, error) {
	return s.adminVerb(sel, false, func(m *Message) (bool, bool) { return true, true })
}

// Hold parks every non-final recipient of the selected messages. A recipient whose attempt is in flight
// (active) is marked HoldPending and parked when the attempt ends without a final outcome.
func (s *Store) Hold(sel Selector) (int, error) {
	return s.adminVerb(sel, false, func(m *Message) (bool, bool) {
		changed := false
		for i := range m.Recipients {
			r := &m.Recipients[i]
			switch r.State {
			case StateQueued, StateDeferred:
				r.State = StateHold
				changed = true
			case StateActive:
				changed = changed || !r.HoldPending
				r.HoldPending = true
			}
		}
		return changed, false
	})
}

// Release returns held recipients to the state they had before Hold, due now, and cancels a pending hold.
func (s *Store) Release(sel Selector) (int, error) {
	now := s.now()
	return s.adminVerb(sel, true, func(m *Message) (bool, bool) {
		changed := false
		for i := range m.Recipients {
			r := &m.Recipients[i]
			switch {
			case r.State == StateHold:
				r.State = releaseState(r.HeldFrom)
				r.NextAttempt = now
				changed = true
			case r.HoldPending:
				r.HoldPending = false
				changed = true
			}
		}
		return changed, false
	})
}

// releaseState is where a held recipient goes back to: the state it was held from, or queued.
func releaseState(from State) State {
	if from == StateDeferred {
		return StateDeferred
	}
	return StateQueued
}

// Retry makes every queued or deferred recipient of the selected messages due now and wakes Notify.
func (s *Store) Retry(sel Selector) (int, error) {
	now := s.now()
	return s.adminVerb(sel, true, func(m *Message) (bool, bool) {
		changed := false
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State == StateQueued || r.State == StateDeferred {
				r.NextAttempt = now
				changed = true
			}
		}
		return changed, false
	})
}

// Bounce marks every non-final recipient BounceNow and due now; the delivery side bounces them with a DSN.
// Held recipients are released for that (a bounce outranks a hold); active ones keep their attempt, and are
// bounced by the delivery side if it does not succeed.
func (s *Store) Bounce(sel Selector) (int, error) {
	now := s.now()
	return s.adminVerb(sel, true, func(m *Message) (bool, bool) {
		changed := false
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State.Final() {
				continue
			}
			if r.State == StateHold {
				r.State = releaseState(r.HeldFrom)
			}
			if r.State != StateActive {
				r.NextAttempt = now
			}
			r.HoldPending = false
			r.BounceNow = true
			changed = true
		}
		return changed, false
	})
}

// adminVerb applies change to every selected message in one transaction. change reports whether it changed the
// message and whether to delete it. wake says whether changed messages may have become due.
func (s *Store) adminVerb(sel Selector, wake bool, change func(m *Message) (changed, del bool)) (int, error) {
	if !sel.All && len(sel.IDs) == 0 {
		return 0, errors.New("queue: select message IDs or all")
	}
	var (
		count      int
		missing    []string
		unreadable []string
		spools     []string
	)
	err := s.submit(&request{fn: func(tx *bolt.Tx) error {
		count, missing, unreadable, spools = 0, nil, nil, nil // fn may run again
		b := bucketsOf(tx)
		apply := func(id string) error {
			old, err := load(b, id)
			if errors.Is(err, ErrNotFound) {
				missing = append(missing, id)
				return nil
			}
			if err != nil {
				// One bad record must not block the verb for the others; Open quarantines it.
				unreadable = append(unreadable, id)
				return nil
			}
			nw, _ := decodeRecord([]byte(id), b.msgs.Get([]byte(id)))
			changed, del := change(&nw.Message)
			if !changed && !del {
				return nil
			}
			if del {
				nw = nil
			} else if err := settle(&old.Message, &nw.Message); err != nil {
				return err
			}
			removed, err := write(b, old, nw)
			if err != nil {
				return err
			}
			if removed && old.Spooled {
				spools = append(spools, id)
			}
			count++
			return nil
		}
		for _, id := range s.selected(b, sel) {
			if err := apply(id); err != nil {
				return err
			}
		}
		return nil
	}})
	if err != nil {
		return 0, err
	}
	for _, id := range spools {
		s.removeSpool(id)
	}
	if wake && count > 0 {
		s.wake()
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", ")))
	}
	if len(unreadable) > 0 {
		errs = append(errs, storageErr("read", fmt.Errorf("records do not decode (quarantined at the next start): %s",
			strings.Join(unreadable, ", "))))
	}
	return count, errors.Join(errs...)
}

// selected lists the IDs a selector names; for All, every stored message.
func (s *Store) selected(b buckets, sel Selector) []string {
	if !sel.All {
		return sel.IDs
	}
	var ids []string
	c := b.msgs.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		ids = append(ids, string(k))
	}
	return ids
}
