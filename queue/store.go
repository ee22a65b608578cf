package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configures a Store. The queue takes plain values, never config.Config.
type Options struct {
	Dir string // holds queue.db and spool/; created if missing
	// InlineMax: bodies up to this many bytes live in bbolt, larger ones in spool files. 0 = DefaultInlineMax;
	// negative = every body goes to a spool file (for tests and measurements).
	InlineMax   int64
	OpenTimeout time.Duration // how long to wait for bbolt's file lock; 0 = 1s (never wait forever)
	ReadOnly    bool          // for offline inspection (queue list) when no daemon runs
	Logger      *slog.Logger
	Now         func() time.Time // nil = time.Now
}

// DefaultInlineMax is where a body stops being a bbolt value and becomes a spool file. Measured with
// BenchmarkInterleaved (bench_test.go) on the project machine (2 vCPU, virtio disk, ext4), 2026-11-27, a calm
// run: accepted msg/s (each fsync'd before Commit returns), median of 5 interleaved 0.4 s slices; plain bbolt
// Update of a 4 KiB value, one writer, for reference: 2620/s.
//
//	body       inline w=1   spool w=1   inline w=20   spool w=20
//	4 KiB         2198         865        17255         1972
//	64 KiB        1425         730         6660         1675
//	128 KiB        992         628         3505         1330
//	256 KiB        592         572         1575          978
//	1 MiB          125         248          402          368
//
// (A noisier run, with other builds on the machine, kept the same order: inline 1.4-1.5x spool at 64 and
// 128 KiB, even at 256 KiB, spool 1.6-2.3x ahead at 1 MiB.) Inline wins up to the crossover near 256 KiB for
// one writer. The limit sits below it because what the benchmark leaves out also favours spool files for big
// bodies: bbolt never splits a leaf of 4 keys or fewer, so putting or deleting (on delivery) a large value
// rewrites up to three large neighbours; the database file grows and does not shrink; and each session holds
// up to InlineMax bytes in memory before spilling.
const DefaultInlineMax = 128 << 10

// DefaultOpenTimeout bounds the wait for the database lock, so a second process fails fast with ErrLocked.
const DefaultOpenTimeout = time.Second

var (
	// ErrLocked: another process (normally the running daemon) holds the database.
	ErrLocked = errors.New("queue database is in use by another process (is the daemon running?)")
	// ErrNotFound: no message with that ID.
	ErrNotFound = errors.New("no such message in the queue")
	// ErrStorage wraps every failure to read or write the disk (bbolt, spool files, fsync) and a closed Store.
	// The inbound side answers it with 451 4.3.0 so the client keeps the message and retries.
	ErrStorage = errors.New("queue storage failure")
	// ErrReadOnly: a write was attempted on a Store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("queue opened read-only")
)

// schemaVersion is written to the meta bucket; a database written by a newer ptrelay is refused rather than
// misread, and one written by an older ptrelay is migrated at the first read-write Open (migrate.go).
//
//	1  records, bodies, due index, quarantine
//	2  + the active index and the stored counts, so that start-up and status read neither every record nor
//	     every body
const schemaVersion = 2

var (
	bucketMeta    = []byte("meta")
	bucketMsgs    = []byte("msgs")    // ID -> record (JSON)
	bucketBodies  = []byte("bodies")  // ID -> body, for bodies up to InlineMax
	bucketDue     = []byte("due")     // big-endian next-attempt nanoseconds + ID -> nothing
	bucketActive  = []byte("active")  // ID -> nothing, for messages with a recipient in StateActive (schema 2)
	bucketCorrupt = []byte("corrupt") // original key -> corruptEntry (JSON)
	keySchema     = []byte("schema")
)

// allBuckets are the buckets of the current schema; bucketActive is the one schema 1 lacks.
var allBuckets = [][]byte{bucketMeta, bucketMsgs, bucketBodies, bucketDue, bucketActive, bucketCorrupt}

const (
	dbName    = "queue.db"
	spoolName = "spool"
)

// Store is the durable queue. All methods are safe for concurrent use.
type Store struct {
	db        *bolt.DB
	readOnly  bool
	spool     string
	inlineMax int64
	log       *slog.Logger
	now       func() time.Time
	ids       idGen
	notify    chan struct{}
	// bodyBufs recycles the in-memory body buffers of Writers once their commit is over (bbolt does not copy a
	// value until the transaction writes it, so a buffer is free only then): at 100 KB messages, growing a fresh
	// slice for every body was a visible share of the allocation and GC work.
	bodyBufs sync.Pool

	mu       sync.RWMutex // held shared while sending on reqs, exclusively to close it
	closed   bool
	reqs     chan *request
	loopDone chan struct{}
}

// Open opens (creating if needed) the queue in opts.Dir. A read-write open also recovers what a crash left,
// reading only the messages that had an attempt in flight (the active index), never every record: their
// recipients become deferred (NextAttempt kept); spool files with no record and stale temporary files are
// removed. A database of the previous schema is migrated first, which reads everything once (migrate.go).
// Damaged records are quarantined when something reads them, never fatal. If another process holds the
// database, Open fails after OpenTimeout with an error wrapping ErrLocked.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: Options.Dir is empty")
	}
	s := &Store{
		readOnly:  opts.ReadOnly,
		spool:     filepath.Join(opts.Dir, spoolName),
		inlineMax: opts.InlineMax,
		log:       opts.Logger,
		now:       opts.Now,
		notify:    make(chan struct{}, 1),
	}
	if s.inlineMax == 0 {
		s.inlineMax = DefaultInlineMax
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ids.now = s.now
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	path := filepath.Join(opts.Dir, dbName)
	if opts.ReadOnly {
		// bbolt would try to create a missing file and fail with a less helpful error.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("queue: no database to inspect: %w", err)
		}
	} else if err := os.MkdirAll(s.spool, 0o700); err != nil {
		return nil, storageErr("open", err)
	}
	db, err := openBolt(path, opts.ReadOnly, timeout)
	if err != nil {
		return nil, err
	}
	s.db = db
	version, err := s.checkSchema()
	if err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		removeStaleCompaction(path, s.log)
		if version < schemaVersion {
			err = s.migrate(version)
		} else {
			err = s.recover()
		}
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := s.floorIDs(); err != nil {
		db.Close()
		return nil, storageErr("open", err)
	}
	if !opts.ReadOnly {
		s.reqs = make(chan *request, maxBatch)
		s.loopDone = make(chan struct{})
		go s.commitLoop()
	}
	return s, nil
}

// boltOptions are the same for the daemon, the CLI and compaction.
func boltOptions(readOnly bool, timeout time.Duration) *bolt.Options {
	return &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		// The freelist is not written by every commit: one page less per fsync'd commit (many after a large
		// backlog drained), no durability lost (etcd runs this way). Close writes it once (saveFreelist);
		// after a crash, Open rebuilds it by walking the file.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

// openBolt opens the database file and takes its lock. A process that waited for the lock while `ptrelay queue
// compact` replaced the file holds the old, deleted file once the lock is free: it would accept mail into a
// file nobody will read again. So the file opened is checked against the one at path, and opened again if
// they differ.
func openBolt(path string, readOnly bool, timeout time.Duration) (*bolt.DB, error) {
	for range 3 {
		var f *os.File
		opts := boltOptions(readOnly, timeout)
		opts.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
			var err error
			f, err = os.OpenFile(name, flag, mode)
			return f, err
		}
		db, err := bolt.Open(path, 0o600, opts)
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
		}
		if err != nil {
			return nil, storageErr("open "+path, err)
		}
		if sameFile(f, path) {
			return db, nil
		}
		db.Close()
	}
	return nil, storageErr("open "+path, errors.New("the database file was replaced three times while opening it"))
}

func sameFile(f *os.File, path string) bool {
	if f == nil {
		return true // bbolt did not use OpenFile: nothing to compare
	}
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// checkSchema creates the buckets (read-write), refuses a database written by a newer schema and returns the
// stored version. A new database gets the current version and zero counts.
func (s *Store) checkSchema() (int, error) {
	version := func(meta *bolt.Bucket) (int, error) {
		v := meta.Get(keySchema)
		if v == nil {
			return 0, nil
		}
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 {
			return 0, fmt.Errorf("queue: unreadable schema version %q", v)
		}
		if n > schemaVersion {
			return 0, fmt.Errorf("queue: database schema %d is newer than this ptrelay understands (%d); run the newer version", n, schemaVersion)
		}
		return n, nil
	}
	var found int
	if s.readOnly {
		err := s.db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("queue: %s is not a ptrelay queue database (bucket %q missing)", s.db.Path(), bucketMeta)
			}
			var err error
			if found, err = version(meta); err != nil {
				return err
			}
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil && !(found < 2 && string(name) == string(bucketActive)) {
					return fmt.Errorf("queue: %s is not a ptrelay queue database (bucket %q missing)", s.db.Path(), name)
				}
			}
			return nil
		})
		return found, err
	}
	var schemaErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if found, schemaErr = version(meta); schemaErr != nil {
			return schemaErr
		}
		if found != 0 {
			return nil
		}
		found = schemaVersion
		if err := meta.Put(keyCounts, (&counts{}).encode()); err != nil {
			return err
		}
		return meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	})
	if schemaErr != nil {
		return 0, schemaErr
	}
	if err != nil {
		return 0, storageErr("init", err)
	}
	return found, nil
}

// floorIDs makes new IDs sort after every stored one, even if the clock went back since they were made.
func (s *Store) floorIDs() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsgs, bucketCorrupt} {
			if b := tx.Bucket(name); b != nil {
				if k, _ := b.Cursor().Last(); k != nil {
					s.ids.floor(string(k))
				}
			}
		}
		return nil
	})
}

// Close stops the commit loop (after it has committed what was submitted), writes the free-page list and closes
// the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.reqs != nil {
		close(s.reqs)
	}
	s.mu.Unlock()
	if s.loopDone != nil {
		<-s.loopDone
	}
	if !s.readOnly {
		s.saveFreelist()
	}
	if err := s.db.Close(); err != nil {
		return storageErr("close", err)
	}
	return nil
}

// saveFreelist ends with one commit that writes bbolt's list of free pages. Commits leave it out
// (NoFreelistSync: one write less per fsync'd commit), so an Open after them rebuilds it by walking every page of
// the file: 7-8 s from a cold disk at 100,000 queued messages, whatever recovery reads. After a clean stop the
// next Open reads the list instead; after a crash it still walks the file.
func (s *Store) saveFreelist() {
	s.db.NoFreelistSync = false
	err := s.db.Update(func(*bolt.Tx) error { return nil })
	s.db.NoFreelistSync = true
	if err != nil {
		s.log.Warn("cannot write the free-page list; the next start reads the whole database file", "err", err)
	}
}

// Notify returns a channel that receives (non-blocking, capacity 1) after every commit that may have made work
// due, so the scheduler wakes at once instead of polling.
func (s *Store) Notify() <-chan struct{} { return s.notify }

func (s *Store) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// storageErr marks err as a storage failure (ErrStorage) while keeping the cause for errors.Is and the log.
func storageErr(op string, err error) error {
	return fmt.Errorf("queue %s: %w: %w", op, ErrStorage, err)
}

// buckets are the open buckets of one transaction. active is nil in a schema 1 database opened read-only.
type buckets struct {
	meta, msgs, bodies, due, active, corrupt *bolt.Bucket
}

func bucketsOf(tx *bolt.Tx) buckets {
	return buckets{
		meta:    tx.Bucket(bucketMeta),
		msgs:    tx.Bucket(bucketMsgs),
		bodies:  tx.Bucket(bucketBodies),
		due:     tx.Bucket(bucketDue),
		active:  tx.Bucket(bucketActive),
		corrupt: tx.Bucket(bucketCorrupt),
	}
}

// view runs fn in a read transaction; bbolt errors become storage errors, fn's own errors pass through.
func (s *Store) view(fn func(b buckets) error) error {
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		fnErr = fn(bucketsOf(tx))
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return storageErr("read", err)
	}
	return nil
}
