package queue

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// migrate upgrades a database written by an earlier ptrelay to the current schema, at the first read-write Open
// (the daemon's start, or an offline queue command). From schema 1 that means building the active index and the
// counts, which takes one pass over every record, in the same transaction as the full check of repairAll: a
// crash during it leaves the database at schema 1, migrated again at the next start.
func (s *Store) migrate(from int) error {
	start := time.Now()
	s.log.Warn("upgrading the database to the current schema; this reads every record once",
		"from", from, "to", schemaVersion)
	var rep repairReport
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := bucketsOf(tx)
		var err error
		if rep, err = s.repairAll(b); err != nil {
			return err
		}
		return b.meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	})
	if err != nil {
		return storageErr(fmt.Sprintf("migrate schema %d to %d", from, schemaVersion), err)
	}
	s.finishRepair(rep)
	s.log.Warn("database upgraded", "schema", schemaVersion, "messages", rep.messages,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// repairReport says what repairAll found and changed.
type repairReport struct {
	messages    int      // live messages after the repair
	quarantined int      // records moved to the corrupt bucket
	repaired    int      // records rewritten (interrupted attempts, finished messages left behind)
	dueFixed    int      // due-index keys added or removed
	activeFixed int      // active-index keys added or removed
	orphans     int      // inline bodies without a record
	spools      []string // spool files to remove once the transaction has committed
}

// repairAll checks every record and index in one write transaction and makes them agree, as a start-up used to
// do every time: records that do not decode, or whose spool file is gone, are quarantined; recipients left
// active become deferred; finished messages left behind are removed; the due and active indexes are rebuilt
// where they differ; inline bodies without a record are dropped; the counts are recounted. It is what migration
// and Compact run: both read everything anyway.
func (s *Store) repairAll(b buckets) (repairReport, error) {
	now := s.now()
	var rep repairReport
	type badRecord struct {
		key    []byte
		reason string
	}
	var bad []badRecord
	var fixes [][2]*record // old, new
	wantDue, wantActive := map[string]bool{}, map[string]bool{}
	c := b.msgs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeRecord(k, v)
		if err == nil && r.Spooled {
			if _, serr := os.Stat(s.spoolPath(r.ID)); serr != nil {
				err = fmt.Errorf("spool file missing: %v", serr)
			}
		}
		if err != nil {
			bad = append(bad, badRecord{bytes.Clone(k), err.Error()})
			continue
		}
		old := r.clone()
		if reactivate(r, now) || allFinal(&r.Message) {
			fixes = append(fixes, [2]*record{old, r})
		}
		if allFinal(&r.Message) {
			continue // removed by its fix
		}
		if dk := dueKey(&r.Message); dk != nil {
			wantDue[string(dk)] = true
		}
		if hasActive(&r.Message) {
			wantActive[r.ID] = true
		}
	}
	for _, x := range bad {
		if _, _, err := quarantineIn(b, x.key, x.reason, now); err != nil {
			return rep, err
		}
		s.log.Error("record quarantined", "key", string(x.key), "reason", x.reason)
		rep.quarantined++
	}
	for _, f := range fixes {
		gone, err := write(b, f[0], f[1])
		if err != nil {
			return rep, err
		}
		if gone && f[0].Spooled {
			rep.spools = append(rep.spools, f[0].ID)
		}
		rep.repaired++
	}
	var err error
	if rep.dueFixed, err = reconcile(b.due, wantDue); err != nil {
		return rep, err
	}
	if rep.activeFixed, err = reconcile(b.active, wantActive); err != nil {
		return rep, err
	}
	if rep.orphans, err = dropOrphanBodies(b); err != nil {
		return rep, err
	}
	if err := recount(b); err != nil {
		return rep, err
	}
	cnt, _, err := readCounts(b)
	rep.messages = int(cnt.messages)
	return rep, err
}

// finishRepair removes what repairAll left for after its commit and logs what it did.
func (s *Store) finishRepair(rep repairReport) {
	for _, id := range rep.spools {
		s.removeSpool(id)
	}
	orphanSpool, _ := s.sweepSpool()
	for what, n := range map[string]int{"quarantined": rep.quarantined, "repaired": rep.repaired,
		"due_fixed": rep.dueFixed, "active_fixed": rep.activeFixed, "orphan_bodies": rep.orphans,
		"orphan_spool": orphanSpool} {
		if n > 0 {
			s.log.Warn("repaired", "what", what, "count", n)
		}
	}
}

// reconcile makes index exactly the set of keys in want (which it empties).
func reconcile(index *bolt.Bucket, want map[string]bool) (int, error) {
	var stale [][]byte
	ic := index.Cursor()
	for k, _ := ic.First(); k != nil; k, _ = ic.Next() {
		if want[string(k)] {
			delete(want, string(k))
		} else {
			stale = append(stale, bytes.Clone(k))
		}
	}
	for _, k := range stale {
		if err := index.Delete(k); err != nil {
			return 0, err
		}
	}
	for k := range want {
		if err := index.Put([]byte(k), []byte{}); err != nil {
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
