package queue

import (
	"bytes"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// recover runs at every read-write Open of a current database, before the commit loop starts, and repairs
// what a crash leaves behind, reading only what the crash can have touched, so that a restart costs the same
// with 10 or 100,000 messages queued and reads neither every record nor every body from a cold disk:
//   - a recipient left active (its attempt died with the process) becomes deferred, NextAttempt kept (it was
//     set to the retry time before the attempt began), or hold when a hold was pending: the messages are
//     those of the active index, at most the deliveries that were in flight;
//   - spool files without a record and temp files are removed (a commit that did not happen).
//
// Everything else that write keeps in step (due index, active index, counts) is changed in the same
// transaction as the records, so a crash cannot leave it behind. Damage that is not a crash's (a record that
// no longer decodes) is quarantined when something reads it (quarantine.go); migrate and Compact check
// everything.
func (s *Store) recover() error {
	now := s.now()
	repaired, quarantined := 0, 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := bucketsOf(tx)
		var ids [][]byte
		c := b.active.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, bytes.Clone(k))
		}
		needRecount := false
		for _, k := range ids {
			raw := b.msgs.Get(k)
			if raw == nil {
				if err := b.active.Delete(k); err != nil {
					return err
				}
				continue
			}
			r, err := decodeRecord(k, raw)
			if err != nil {
				_, rc, qerr := quarantineIn(b, k, err.Error(), now)
				if qerr != nil {
					return qerr
				}
				s.log.Error("record quarantined", "key", string(k), "reason", err.Error())
				quarantined++
				needRecount = needRecount || rc
				continue
			}
			old := r.clone()
			if !reactivate(r, now) {
				// Indexed but nothing active: a stale entry (write would not have left it).
				if err := b.active.Delete(k); err != nil {
					return err
				}
				continue
			}
			if _, err := write(b, old, r); err != nil {
				return err
			}
			repaired++
		}
		if needRecount {
			return recount(b)
		}
		return nil
	})
	if err != nil {
		return storageErr("recover", err)
	}
	orphans, err := s.sweepSpool()
	if err != nil {
		return err
	}
	for what, n := range map[string]int{"interrupted_attempts": repaired, "quarantined": quarantined,
		"orphan_spool": orphans} {
		if n > 0 {
			s.log.Warn("recovered at start-up", "what", what, "count", n)
		}
	}
	return nil
}

// reactivate turns recipients left active into deferred (or hold, when a hold was pending) and reports whether
// it changed anything.
func reactivate(r *record, now time.Time) bool {
	changed := false
	for i := range r.Recipients {
		rc := &r.Recipients[i]
		if rc.State != StateActive {
			continue
		}
		changed = true
		rc.State = StateDeferred
		if rc.NextAttempt.IsZero() {
			rc.NextAttempt = now
		}
		if rc.HoldPending {
			rc.State, rc.HeldFrom, rc.HoldPending = StateHold, StateDeferred, false
		}
	}
	return changed
}

// sweepSpool removes temp files and ID-named files whose ID has no record, live or quarantined (a commit that
// did not happen, or a removal cut short). Files we did not name are left alone. It reads the spool directory
// and looks each name up, never the records.
func (s *Store) sweepSpool() (int, error) {
	entries, err := os.ReadDir(s.spool)
	if err != nil {
		s.log.Error("cannot list spool directory", "err", err)
		return 0, nil
	}
	var remove []string
	err = s.view(func(b buckets) error {
		for _, e := range entries {
			name := e.Name()
			switch {
			case isTempName(name):
				remove = append(remove, name)
			case ValidID(name):
				if b.msgs.Get([]byte(name)) == nil && b.corrupt.Get([]byte(name)) == nil {
					remove = append(remove, name)
				}
			default:
				s.log.Warn("unknown file in spool directory left alone", "file", name)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range remove {
		if err := os.Remove(s.spoolPath(name)); err != nil {
			s.log.Warn("cannot remove stale spool file", "file", name, "err", err)
			continue
		}
		n++
	}
	return n, nil
}
