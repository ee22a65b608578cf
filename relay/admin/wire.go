package admin

import (
	"errors"

	"ptrelay/queue"
)

// The API, version 1 (all JSON but the body):
//
//	GET  /v1/status               Status
//	GET  /v1/messages?FILTER      a stream of listLine, one JSON object per line (application/x-ndjson):
//	                              {"message":...} or {"corrupt":...} per entry, oldest first, {} at
//	                              the end of each batch the daemon read (flush there), then
//	                              {"end":{"count":N,"last":ID,"more":bool}}, or {"error":...} if the
//	                              listing failed after it began; FILTER: state, domain, sender, before
//	                              (RFC 3339), after (an ID), limit
//	GET  /v1/messages/{id}        *queue.Message
//	GET  /v1/messages/{id}/body   the stored body, application/octet-stream
//	GET  /v1/corrupt              []queue.CorruptRecord
//	POST /v1/{verb}               selection in, verbResult out; verb is delete|hold|release|retry|bounce
//	GET  /v1/alerts, POST /v1/alerts/test     alerts.go
//	GET  /v1/mtasts, POST /v1/mtasts/flush    tlspolicy.go
//
// Failures answer a wireError with a matching HTTP status.

type selection struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// listLine is one line of a listing.
type listLine struct {
	Message *queue.Message       `json:"message,omitempty"`
	Corrupt *queue.CorruptRecord `json:"corrupt,omitempty"`
	End     *queue.Page          `json:"end,omitempty"`
	wireError
}

type verbResult struct {
	Count int `json:"count"`
	wireError
}

type wireError struct {
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"` // names the queue sentinel the error wraps, so errors.Is works remotely
}

// kinds maps the queue's sentinel errors to their names on the wire.
var kinds = []struct {
	name string
	err  error
}{
	{"not_found", queue.ErrNotFound},
	{"storage", queue.ErrStorage},
	{"read_only", queue.ErrReadOnly},
	{"locked", queue.ErrLocked},
	{"forbidden", ErrForbidden},
}

// ErrForbidden: the daemon refused the caller's user (see Server).
var ErrForbidden = errors.New("not allowed to use the admin socket")

func kindOf(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

func toWire(err error) wireError {
	if err == nil {
		return wireError{}
	}
	return wireError{Error: err.Error(), Kind: kindOf(err)}
}

// remoteError is an error that came over the socket: the daemon's text unchanged (so the CLI prints the same
// words online and offline) and the sentinel it wrapped there.
type remoteError struct {
	text string
	kind error
}

func (e *remoteError) Error() string { return e.text }
func (e *remoteError) Unwrap() error { return e.kind }

func fromWire(w wireError) error {
	if w.Error == "" {
		return nil
	}
	e := &remoteError{text: w.Error}
	for _, k := range kinds {
		if k.name == w.Kind {
			e.kind = k.err
		}
	}
	return e
}
