package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// recover runs at every read-write Open, before the commit loop starts, and repairs what a crash or a damaged
// record leaves behind. Nothing here is fatal except failing to write the database at all:
//   - a recipient left active (its attempt died with the process) becomes deferred, NextAttempt kept (it was
//     set to the retry time before the attempt began), or hold when a hold was pending;
//   - a record that does not decode, or whose spool file is gone, moves to the corrupt bucket with the reason;
//   - the due index is rebuilt where it differs from the records;
//   - inline bodies without a record, spool files without a spooled record and temp files are removed.
//
// Bodies of quarantined records are kept for the admin.
func (s *Store) recover() error {
	now := s.now()
	var (
		keepSpool = map[string]bool{}
		removed   []string
		report    = map[string]int{}
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := bucketsOf(tx)
		type badRecord struct {
			key, raw []byte
			reason   string
		}
		var bad []badRecord
		var fixes [][2]*record // old, new
		c := b.msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := decodeRecord(k, v)
			if err == nil && r.Spooled {
				if _, serr := os.Stat(s.spoolPath(r.ID)); serr != nil {
					err = fmt.Errorf("spool file missing: %v", serr)
				}
			}
			if err != nil {
				bad = append(bad, badRecord{bytes.Clone(k), bytes.Clone(v), err.Error()})
				continue
			}
			if r.Spooled {
				keepSpool[r.ID] = true
			}
			old, _ := decodeRecord(k, v)
			if reactivate(r, now) || allFinal(&r.Message) {
				fixes = append(fixes, [2]*record{old, r})
			}
		}
		for _, x := range bad {
			e, _ := json.Marshal(corruptEntry{Reason: x.reason, At: now, Raw: x.raw})
			if err := b.corrupt.Put(x.key, e); err != nil {
				return err
			}
			if err := b.msgs.Delete(x.key); err != nil {
				return err
			}
			s.log.Error("record quarantined", "key", string(x.key), "reason", x.reason)
			report["quarantined"]++
		}
		for _, f := range fixes {
			gone, err := write(b, f[0], f[1])
			if err != nil {
				return err
			}
			if gone && f[0].Spooled {
				removed = append(removed, f[0].ID)
				delete(keepSpool, f[0].ID)
			}
			report["repaired"]++
		}
		n, err := reconcileDue(b)
		report["due_fixed"] = n
		if err != nil {
			return err
		}
		n, err = dropOrphanBodies(b)
		report["orphan_bodies"] = n
		if err != nil {
			return err
		}
		cc := b.corrupt.Cursor()
		for k, _ := cc.First(); k != nil; k, _ = cc.Next() {
			keepSpool[string(k)] = true
		}
		return nil
	})
	if err != nil {
		return storageErr("recover", err)
	}
	for _, id := range removed {
		s.removeSpool(id)
	}
	report["orphan_spool"] = s.sweepSpool(keepSpool)
	for k, n := range report {
		if n > 0 {
			s.log.Warn("recovered at start-up", "what", k, "count", n)
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

// reconcileDue makes the due index exactly the set of keys the records call for.
func reconcileDue(b buckets) (int, error) {
	want := map[string]bool{}
	c := b.msgs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if r, err := decodeRecord(k, v); err == nil {
			if dk := dueKey(&r.Message); dk != nil {
				want[string(dk)] = true
			}
		}
	}
	var stale [][]byte
	dc := b.due.Cursor()
	for k, _ := dc.First(); k != nil; k, _ = dc.Next() {
		if want[string(k)] {
			delete(want, string(k))
		} else {
			stale = append(stale, bytes.Clone(k))
		}
	}
	for _, k := range stale {
		if err := b.due.Delete(k); err != nil {
			return 0, err
		}
	}
	for k := range want {
		if err := b.due.Put([]byte(k), []byte{}); err != nil {
			return 0, err
		}
	}
	return len(stale) + len(want), nil
}

// dropOrphanBodies removes inline bodies that belong to no record and to no quarantined one.
func dropOrphanBodies(b buckets) (int, error) {
	var orphans [][]byte
	c := b.bodies.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if b.msgs.Get(k) == nil && b.corrupt.Get(k) == nil {
			orphans = append(orphans, bytes.Clone(k))
		}
	}
	for _, k := range orphans {
		if err := b.bodies.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(orphans), nil
}

// sweepSpool removes temp files and ID-named files not in keep. Files we did not name are left alone.
func (s *Store) sweepSpool(keep map[string]bool) int {
	entries, err := os.ReadDir(s.spool)
	if err != nil {
		s.log.Error("cannot list spool directory", "err", err)
		return 0
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		switch {
		case isTempName(name), ValidID(name) && !keep[name]:
			if err := os.Remove(s.spoolPath(name)); err != nil {
				s.log.Warn("cannot remove stale spool file", "file", name, "err", err)
				continue
			}
			n++
		case !ValidID(name):
			s.log.Warn("unknown file in spool directory left alone", "file", name)
		}
	}
	return n
}
