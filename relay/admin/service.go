package admin

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"ptrelay/queue"
)

// Verb is an admin action on queued messages, as `ptrelay queue VERB` names it.
type Verb string

const (
	VerbDelete  Verb = "delete"  // remove without a bounce
	VerbHold    Verb = "hold"    // park until released
	VerbRelease Verb = "release" // back to where hold found it, due now
	VerbRetry   Verb = "retry"   // due now
	VerbBounce  Verb = "bounce"  // fail now with a DSN to the sender
)

// Verbs lists every verb, in the order the CLI's help shows them.
var Verbs = []Verb{VerbDelete, VerbHold, VerbRelease, VerbRetry, VerbBounce}

// Valid reports whether v is one of Verbs.
func (v Verb) Valid() bool {
	for _, w := range Verbs {
		if v == w {
			return true
		}
	}
	return false
}

// wakes reports whether the verb may make mail due, so the scheduler must look at the queue at once.
func (v Verb) wakes() bool { return v == VerbRelease || v == VerbRetry || v == VerbBounce }

// Service is the daemon's side of every admin front end: the admin socket's API (Server) and the web console
// call the same methods on the same queue, status and scheduler, so `ptrelay queue list` and the page cannot
// show different things, and an action taken in a browser is the one `ptrelay queue retry` takes, logged the
// same way. It is safe for concurrent use.
type Service struct {
	q      Queue
	status func() Status
	kick   func()
	log    *slog.Logger
	now    func() time.Time
}

// NewService works on q. status is called for every status request (it must be safe for concurrent use); kick
// is called after retry, release and bounce changed something, so the scheduler looks at the queue at once (it
// must not block). Either may be nil; log nil discards.
func NewService(q Queue, status func() Status, kick func(), log *slog.Logger) *Service {
	if status == nil {
		status = func() Status { return Status{} }
	}
	if kick == nil {
		kick = func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{q: q, status: status, kick: kick, log: log, now: time.Now}
}

// Status returns the daemon's status with its durations derived as of now.
func (s *Service) Status() Status {
	st := s.status()
	st.SetDurations(s.now())
	return st
}

// Scan streams the messages f selects (see queue.Store.Scan).
func (s *Service) Scan(f queue.Filter, fn func(queue.Item) error) (queue.Page, error) {
	return s.q.Scan(f, fn)
}

// Get returns one message; the error wraps queue.ErrNotFound when there is none.
func (s *Service) Get(id string) (*queue.Message, error) { return s.q.Get(id) }

// Body opens one message's stored body.
func (s *Service) Body(id string) (io.ReadCloser, error) { return s.q.Body(id) }

// Corrupt returns the quarantined records.
func (s *Service) Corrupt() ([]queue.CorruptRecord, error) { return s.q.Corrupt() }

// Log is the logger actions are logged to, for front ends that log their own events beside them.
func (s *Service) Log() *slog.Logger { return s.log }

// Do applies verb to the selected messages and returns how many it changed. Admin actions change mail's fate:
// each is logged with who asked (who: slog key/value pairs such as "uid", 0 or "web_user", "alice"), as
// Postfix logs postsuper's. The errors are the queue's (queue.ErrNotFound for unknown IDs, after the known
// ones were handled).
func (s *Service) Do(verb Verb, sel queue.Selector, who ...any) (int, error) {
	var (
		n   int
		err error
	)
	switch verb {
	case VerbDelete:
		n, err = s.q.Delete(sel)
	case VerbHold:
		n, err = s.q.Hold(sel)
	case VerbRelease:
		n, err = s.q.Release(sel)
	case VerbRetry:
		n, err = s.q.Retry(sel)
	case VerbBounce:
		n, err = s.q.Bounce(sel)
	default:
		return 0, fmt.Errorf("%q is not a queue verb: use delete, hold, release, retry or bounce", verb)
	}
	attrs := append([]any{"verb", string(verb), "count", n}, who...)
	if sel.All {
		attrs = append(attrs, "all", true)
	} else {
		attrs = append(attrs, "ids", sel.IDs)
	}
	if err != nil {
		s.log.Warn("queue "+string(verb), append(attrs, "err", err)...)
	} else {
		s.log.Info("queue "+string(verb), attrs...)
	}
	if verb.wakes() && n > 0 {
		s.kick()
	}
	return n, err
}
