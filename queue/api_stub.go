package queue

// CONTRACT STUB: the queue helper replaces this file with the real implementation (store.go, put.go, due.go,
// transition.go, list.go, id.go ...). Signatures and documented behaviour here are the contract other packages
// code against; change them only together with their callers.

import (
	"errors"
	"io"
	"log/slog"
	"time"
)

var errStub = errors.New("queue: not implemented yet")

// Options configures a Store. The queue takes plain values, never config.Config.
type Options struct {
	Dir         string        // holds queue.db and spool/; created if missing
	InlineMax   int64         // bodies up to this many bytes live in bbolt, larger ones in spool files; 0 = default
	OpenTimeout time.Duration // how long to wait for bbolt's file lock; 0 = 1s (never wait forever)
	ReadOnly    bool          // for offline inspection (queue list) when no daemon runs
	Logger      *slog.Logger
	Now         func() time.Time // nil = time.Now
}

var (
	// ErrLocked: another process (normally the running daemon) holds the database.
	ErrLocked = errors.New("queue database is in use by another process (is the daemon running?)")
	// ErrNotFound: no message with that ID.
	ErrNotFound = errors.New("no such message in the queue")
)

// Store is the durable queue. All methods are safe for concurrent use.
type Store struct{}

// Open opens (creating if needed) the queue in opts.Dir. A read-write open also recovers: recipients left
// active by a crash become deferred (their NextAttempt kept), spool files with no record are removed, and
// records that do not decode are moved to the corrupt bucket (listed by Corrupt), never fatal.
func Open(opts Options) (*Store, error) { return nil, errStub }

// Close stops the commit loop and closes the database.
func (s *Store) Close() error { return errStub }

// Writer receives one message body. Bodies larger than InlineMax spill to a spool file as they are written,
// so memory stays bounded.
type Writer struct{}

// NewWriter starts a new message body.
func (s *Store) NewWriter() (*Writer, error) { return nil, errStub }

func (w *Writer) Write(p []byte) (int, error) { return 0, errStub }

// Size is the number of body bytes written so far.
func (w *Writer) Size() int64 { return 0 }

// Commit makes the message durable and returns its ID (unique, sortable by time). It returns only after the
// body (spool file fsync'd, renamed, directory fsync'd; or inline) and the record with its due-index entry are
// committed by a fsync'd bbolt transaction shared with concurrent commits (group commit, no batching timer).
// Every recipient must be StateQueued; NextAttempt zero means "now". On error nothing is left behind.
func (w *Writer) Commit(env Envelope, rcpts []Recipient) (string, error) { return "", errStub }

// Abort discards the body. Safe after Commit (no-op).
func (w *Writer) Abort() error { return errStub }

// Notify returns a channel that receives (non-blocking, capacity 1) after every commit that may have made work
// due, so the scheduler wakes at once instead of polling.
func (s *Store) Notify() <-chan struct{} { return nil }

// Due returns up to max messages that have at least one recipient in StateQueued or StateDeferred whose
// NextAttempt <= now (or with BounceNow set), earliest first.
func (s *Store) Due(now time.Time, max int) ([]*Message, error) { return nil, errStub }

// NextDue returns the earliest NextAttempt of any recipient waiting in StateQueued or StateDeferred.
func (s *Store) NextDue() (time.Time, bool, error) { return time.Time{}, false, errStub }

// Get returns a copy of one message.
func (s *Store) Get(id string) (*Message, error) { return nil, errStub }

// Body opens a message's stored body (with the headers the relay prepended).
func (s *Store) Body(id string) (io.ReadCloser, error) { return nil, errStub }

// Tx is handed to Update's function to add small messages (DSNs) in the same transaction.
type Tx struct{}

// Enqueue adds a new message with an in-memory body in the transaction of the surrounding Update; its ID is
// returned. The message exists only if the Update commits.
func (tx *Tx) Enqueue(env Envelope, rcpts []Recipient, body []byte) (string, error) { return "", errStub }

// Update loads message id, calls fn on a fresh copy, checks that every recipient state change fn made is a
// legal transition (transition.go), re-indexes due times and commits (fsync'd, group commit). When every
// recipient is final after fn, the message and its body are removed. fn may run more than once (a batch
// retried after another member failed): it must be idempotent and have no side effects outside m and tx.
func (s *Store) Update(id string, fn func(m *Message, tx *Tx) error) error { return errStub }

// Selector picks messages for the admin verbs: the IDs given, or every message.
type Selector struct {
	IDs []string
	All bool
}

// List returns every message, oldest first.
func (s *Store) List() ([]*Message, error) { return nil, errStub }

// Delete removes the selected messages without a bounce; it returns how many it removed.
func (s *Store) Delete(sel Selector) (int, error) { return 0, errStub }

// Hold parks every non-final recipient of the selected messages.
func (s *Store) Hold(sel Selector) (int, error) { return 0, errStub }

// Release returns held recipients to the state they had before Hold, due now.
func (s *Store) Release(sel Selector) (int, error) { return 0, errStub }

// Retry makes every queued or deferred recipient of the selected messages due now and wakes Notify.
func (s *Store) Retry(sel Selector) (int, error) { return 0, errStub }

// Bounce marks every non-final recipient BounceNow and due now; the delivery side bounces them with a DSN.
func (s *Store) Bounce(sel Selector) (int, error) { return 0, errStub }

// CorruptRecord is a quarantined record that did not decode.
type CorruptRecord struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Corrupt lists quarantined records.
func (s *Store) Corrupt() ([]CorruptRecord, error) { return nil, errStub }

// Stats is a summary for status and metrics.
type Stats struct {
	Messages      int           `json:"messages"`
	ByState       map[State]int `json:"by_state"` // recipients per state
	OldestArrival time.Time     `json:"oldest_arrival,omitzero"`
	Corrupt       int           `json:"corrupt"`
}

// Stats counts the queue.
func (s *Store) Stats() (Stats, error) { return Stats{}, errStub }
