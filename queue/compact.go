package queue

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// bbolt never gives pages back to the file system: after a queue of 100,000 2 KiB messages drained, queue.db
// stayed at 584 MB, mostly free pages that later commits reuse. Compact rewrites it to its live size, offline.

// compactSuffix names the new file while it is written, beside queue.db (a rename within one directory is
// atomic). A left-over one (a compaction that crashed) is removed by the next read-write Open.
const compactSuffix = ".compact"

// compactTxMax bounds one transaction of the copy, so that memory stays bounded whatever the queue's size.
const compactTxMax = 16 << 20

// CompactResult is what Compact did.
type CompactResult struct {
	Before, After int64 // queue.db's size in bytes
	Messages      int   // live messages kept
	Quarantined   int   // quarantined records kept
}

// Compact rewrites the queue database in opts.Dir to its live size. It takes the database's lock like the
// daemon does, so it fails with ErrLocked while the daemon (or any other ptrelay command) has the queue open;
// opts.ReadOnly is ignored. It first checks and repairs everything (as a migration does), then copies every
// bucket into queue.db.compact, fsyncs it, checks that it holds the same keys, renames it over queue.db and
// fsyncs the directory. A crash at any point leaves either the old file or the new one, both whole; spool files
// are not touched.
func Compact(opts Options) (CompactResult, error) {
	var res CompactResult
	opts.ReadOnly = false
	if _, err := os.Stat(filepath.Join(opts.Dir, dbName)); err != nil {
		return res, fmt.Errorf("queue: no database to compact: %w", err) // and none to create
	}
	s, err := Open(opts)
	if err != nil {
		return res, err
	}
	defer s.Close()
	path := s.db.Path()
	if fi, err := os.Stat(path); err == nil {
		res.Before = fi.Size()
	}

	var rep repairReport
	if err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		rep, err = s.repairAll(bucketsOf(tx))
		return err
	}); err != nil {
		return res, storageErr("compact: check", err)
	}
	s.finishRepair(rep)

	tmp := path + compactSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, storageErr("compact", err)
	}
	if err := copyDB(s.db, tmp); err != nil {
		os.Remove(tmp)
		return res, storageErr("compact", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return res, storageErr("compact: rename", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return res, storageErr("compact: sync directory", err)
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	st, err := s.Stats() // the old file, still open; same content
	res.Messages, res.Quarantined = st.Messages, st.Corrupt
	return res, err
}

// copyDB writes a compact copy of src to path, durably, and checks it.
func copyDB(src *bolt.DB, path string) error {
	opts := boltOptions(false, DefaultOpenTimeout)
	opts.NoSync = true // one fsync at the end instead of one per copy transaction
	dst, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, src, compactTxMax); err != nil {
		dst.Close()
		return err
	}
	if err := sameContent(src, dst); err != nil {
		dst.Close()
		return err
	}
	// Written with the copy, the free-page list spares the next start a walk over the file (see saveFreelist).
	dst.NoFreelistSync = false
	if err := dst.Update(func(*bolt.Tx) error { return nil }); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sameContent checks that every bucket of a holds the same keys and values as in b, and that b has no other
// bucket.
func sameContent(a, b *bolt.DB) error {
	return a.View(func(ta *bolt.Tx) error {
		return b.View(func(tb *bolt.Tx) error {
			n := 0
			err := ta.ForEach(func(name []byte, ba *bolt.Bucket) error {
				n++
				bb := tb.Bucket(name)
				if bb == nil {
					return fmt.Errorf("copy lacks bucket %q", name)
				}
				ca, cb := ba.Cursor(), bb.Cursor()
				ka, va := ca.First()
				kb, vb := cb.First()
				for ; ka != nil; ka, va = ca.Next() {
					if !bytes.Equal(ka, kb) || !bytes.Equal(va, vb) {
						return fmt.Errorf("copy differs in bucket %q at key %q", name, ka)
					}
					kb, vb = cb.Next()
				}
				if kb != nil {
					return fmt.Errorf("copy has an extra key %q in bucket %q", kb, name)
				}
				return nil
			})
			if err != nil {
				return err
			}
			m := 0
			_ = tb.ForEach(func([]byte, *bolt.Bucket) error { m++; return nil })
			if m != n {
				return fmt.Errorf("copy has %d buckets, the database %d", m, n)
			}
			return nil
		})
	})
}

// removeStaleCompaction deletes the file of a compaction that did not finish. Only called with the database's
// lock held, which a running compaction holds until its rename.
func removeStaleCompaction(path string, log *slog.Logger) {
	err := os.Remove(path + compactSuffix)
	if err == nil {
		log.Warn("removed the file of an interrupted compaction", "file", path+compactSuffix)
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Warn("cannot remove the file of an interrupted compaction", "file", path+compactSuffix, "err", err)
	}
}
