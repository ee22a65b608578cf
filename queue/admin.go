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

// verbBatch bounds one transaction of an admin verb. `queue retry -all` over 100,000 messages used to rewrite
// them all in one transaction, whose dirty pages and decoded records took the daemon's heap past 1 GB; in
// batches, memory stays that of one batch (a few MB) and inbound commits go on between them (each batch holds
// them up for tens of ms). Batches of 256 made the same verb take 2.5x longer: each batch is a fsync'd
// commit. Each message is changed atomically; a verb over many messages is not one transaction (as with
// Postfix's postsuper). A variable so that tests can make batches small.
var verbBatch = 1000

// adminVerb applies change to every selected message, verbBatch messages per transaction. change reports
// whether it changed the message and whether to delete it. wake says whether changed messages may have become
// due. With All, the messages are those queued when the verb starts (not mail arriving while it runs).
func (s *Store) adminVerb(sel Selector, wake bool, change func(m *Message) (changed, del bool)) (int, error) {
	if !sel.All && len(sel.IDs) == 0 {
		return 0, errors.New("queue: select message IDs or all")
	}
	var end string // with All: the last ID when the verb started
	if sel.All {
		err := s.view(func(b buckets) error {
			if k, _ := b.msgs.Cursor().Last(); k != nil {
				end = string(k)
			}
			return nil
		})
		if err != nil || end == "" {
			return 0, err
		}
	}
	var (
		total   int
		missing []string
		bad     []damage
		cursor  string // with All: the last ID of the previous batch
		ids     = sel.IDs
	)
	for {
		var batch []string
		if !sel.All {
			if len(ids) == 0 {
				break
			}
			n := min(len(ids), verbBatch)
			batch, ids = ids[:n], ids[n:]
		}
		var (
			count      int
			last       string
			done       bool
			bMissing   []string
			bBad       []damage
			spools     []string
			allInBatch []string
		)
		err := s.submit(&request{fn: func(tx *bolt.Tx) error {
			count, last, done, bMissing, bBad, spools, allInBatch = 0, "", false, nil, nil, nil, nil // fn may run again
			b := bucketsOf(tx)
			todo := batch
			if sel.All {
				allInBatch, done = nextIDs(b, cursor, end, verbBatch)
				todo = allInBatch
				if len(todo) > 0 {
					last = todo[len(todo)-1]
				}
			}
			for _, id := range todo {
				old, err := load(b, id)
				if errors.Is(err, ErrNotFound) {
					bMissing = append(bMissing, id)
					continue
				}
				if d, ok := damagedIn(err); ok {
					// One bad record must not block the verb for the others; it is quarantined below.
					bBad = append(bBad, d)
					continue
				}
				if err != nil {
					return err
				}
				nw := old.clone()
				changed, del := change(&nw.Message)
				if !changed && !del {
					continue
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
			}
			return nil
		}})
		if err != nil {
			return total, err
		}
		for _, id := range spools {
			s.removeSpool(id)
		}
		total += count
		missing = append(missing, bMissing...)
		bad = append(bad, bBad...)
		if wake && count > 0 {
			s.wake()
		}
		if sel.All {
			if done {
				break
			}
			cursor = last
		}
	}
	s.quarantine(bad, nil)
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", ")))
	}
	if len(bad) > 0 {
		keys := make([]string, len(bad))
		for i, d := range bad {
			keys[i] = d.key
		}
		errs = append(errs, storageErr("read", fmt.Errorf("records do not decode (moved to quarantine): %s",
			strings.Join(keys, ", "))))
	}
	return total, errors.Join(errs...)
}

// nextIDs returns up to n message IDs after cursor ("" = from the first) and up to end, and whether it reached
// end (or the last message).
func nextIDs(b buckets, cursor, end string, n int) ([]string, bool) {
	var ids []string
	c := b.msgs.Cursor()
	k, _ := c.First()
	if cursor != "" {
		k, _ = c.Seek([]byte(cursor))
		if k != nil && string(k) == cursor {
			k, _ = c.Next()
		}
	}
	for ; k != nil && string(k) <= end; k, _ = c.Next() {
		if len(ids) == n {
			return ids, false
		}
		ids = append(ids, string(k))
	}
	return ids, true
}
