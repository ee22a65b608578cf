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
// misread.
const schemaVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketMsgs    = []byte("msgs")    // ID -> record (JSON)
	bucketBodies  = []byte("bodies")  // ID -> body, for bodies up to InlineMax
	bucketDue     = []byte("due")     // big-endian next-attempt nanoseconds + ID -> nothing
	bucketCorrupt = []byte("corrupt") // original key -> corruptEntry (JSON)
	keySchema     = []byte("schema")
)

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

// Open opens (creating if needed) the queue in opts.Dir. A read-write open also recovers: recipients left
// active by a crash become deferred (their NextAttempt kept), spool files with no record and stale temporary
// files are removed, and records that do not decode are moved to the corrupt bucket (listed by Corrupt), never
// fatal. If another process holds the database, Open fails after OpenTimeout with an error wrapping ErrLocked.
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
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:  timeout,
		ReadOnly: opts.ReadOnly,
		// The freelist is rebuilt by scanning at open instead of being written by every commit: one page less
		// per fsync'd commit, no durability lost (etcd runs this way). The queue file stays small.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
	}
	if err != nil {
		return nil, storageErr("open "+path, err)
	}
	s.db = db
	if err := s.checkSchema(); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := s.recover(); err != nil {
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

// checkSchema creates the buckets (read-write) and refuses a database written by a newer schema.
func (s *Store) checkSchema() error {
	check := func(meta *bolt.Bucket) error {
		v := meta.Get(keySchema)
		if v == nil {
			return nil
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("queue: unreadable schema version %q", v)
		}
		if n > schemaVersion {
			return fmt.Errorf("queue: database schema %d is newer than this ptrelay understands (%d); run the newer version", n, schemaVersion)
		}
		return nil
	}
	if s.readOnly {
		return s.db.View(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketMeta, bucketMsgs, bucketBodies, bucketDue, bucketCorrupt} {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("queue: %s is not a ptrelay queue database (bucket %q missing)", s.db.Path(), name)
				}
			}
			return check(tx.Bucket(bucketMeta))
		})
	}
	var schemaErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketMsgs, bucketBodies, bucketDue, bucketCorrupt} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if schemaErr = check(meta); schemaErr != nil {
			return schemaErr
		}
		if meta.Get(keySchema) == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
		}
		return nil
	})
	if schemaErr != nil {
		return schemaErr
	}
	if err != nil {
		return storageErr("init", err)
	}
	return nil
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

// Close stops the commit loop (after it has committed what was submitted) and closes the database.
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
	if err := s.db.Close(); err != nil {
		return storageErr("close", err)
	}
	return nil
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

// buckets are the open buckets of one transaction.
type buckets struct {
	msgs, bodies, due, corrupt *bolt.Bucket
}

func bucketsOf(tx *bolt.Tx) buckets {
	return buckets{
		msgs:    tx.Bucket(bucketMsgs),
		bodies:  tx.Bucket(bucketBodies),
		due:     tx.Bucket(bucketDue),
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
