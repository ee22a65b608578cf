package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/httpserve"
)

// Server answers the admin API for the daemon, over its Service.
type Server struct {
	svc    *Service
	log    *slog.Logger
	access *access // set by Listen

	alertList func() []Alert // see SetAlerts
	alertTest func(context.Context) []ChannelResult

	mtastsList  func(domain string) ([]MTASTSPolicy, error) // see SetMTASTS
	mtastsFlush func(domain string) (int, error)
}

// NewServer serves q through a new Service (see NewService for status, kick and log).
func NewServer(q Queue, status func() Status, kick func(), log *slog.Logger) *Server {
	svc := NewService(q, status, kick, log)
	return &Server{svc: svc, log: svc.log}
}

// Service returns the service the server answers with, for the daemon's other front ends (the web console).
func (s *Server) Service() *Service { return s.svc }

// Serve listens on socketPath (see Listen) and answers until ctx ends. A listen failure is returned at once.
func (s *Server) Serve(ctx context.Context, socketPath, group string) error {
	ln, err := s.Listen(socketPath, group)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener answers on ln, a listener from Listen, until ctx ends; then it waits up to 5 seconds for
// requests in flight, closes ln (removing the socket file) and returns nil.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.guard(s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies of tens of MB go through here; the bound only stops a reader that stopped reading.
		WriteTimeout: 5 * time.Minute,
		ConnContext:  withPeer,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return httpserve.Serve(ctx, srv, ln)
}

// Listen creates the socket: mode 0600 for the daemon's user (and root), or, with group (a name or a numeric
// gid), owned by that group with mode 0660 so its members may use ptrelay's CLI. A socket file left by a dead
// daemon is removed; a live one is an error (two daemons on one queue). The same rule is enforced per request
// from the peer's credentials (SO_PEERCRED), which also closes the short window between bind and chmod.
func (s *Server) Listen(socketPath, group string) (net.Listener, error) {
	// sockaddr_un holds 108 bytes with the NUL; bind would only say "invalid argument".
	if len(socketPath) > 107 {
		return nil, fmt.Errorf("admin socket path %s is %d bytes, longer than Unix sockets allow (107): set a shorter admin.socket", socketPath, len(socketPath))
	}
	a, err := newAccess(group)
	if err != nil {
		return nil, err
	}
	if err := removeStale(socketPath); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(socketPath); dir != "" {
		mode := os.FileMode(0o700)
		if group != "" {
			mode = 0o750
		}
		if err := os.MkdirAll(dir, mode); err != nil {
			return nil, fmt.Errorf("admin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("admin socket (admin.socket): %w", err)
	}
	mode := os.FileMode(0o600)
	if a.group >= 0 {
		mode = 0o660
		if err := os.Chown(socketPath, -1, a.group); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket: giving it to group %s: %w", group, err)
		}
	}
	if err := os.Chmod(socketPath, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s.access = a
	return ln, nil
}

// removeStale deletes a socket file nobody answers on. Anything else at the path is left alone: deleting a
// regular file because a config line pointed at it would be worse than refusing to start.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("admin socket %s: a file that is not a socket is in the way; remove it or change admin.socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another process answers on it (is ptrelay already running on this queue?)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin socket: removing the stale socket: %w", err)
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.svc.Status())
	})
	mux.HandleFunc("GET /v1/messages", s.list)
	mux.HandleFunc("GET /v1/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, err := s.svc.Get(r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /v1/messages/{id}/body", s.body)
	s.alertRoutes(mux)
	s.mtastsRoutes(mux)
	mux.HandleFunc("GET /v1/corrupt", func(w http.ResponseWriter, r *http.Request) {
		recs, err := s.svc.Corrupt()
		if err != nil {
			writeError(w, err)
			return
		}
		if recs == nil {
			recs = []queue.CorruptRecord{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
	for _, v := range Verbs {
		mux.HandleFunc("POST /v1/"+string(v), func(w http.ResponseWriter, r *http.Request) {
			s.verb(w, r, v)
		})
	}
	return mux
}

// list streams a listing: each message is written as Scan hands it over, and flushed with the first message and
// at the end of every batch, so the admin sees the head of a 100,000-message queue at once and the daemon holds
// one batch of it at a time.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, err := decodeFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, wireError{Error: "bad request: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	flusher, _ := w.(http.Flusher)
	flush := func() error {
		err := bw.Flush()
		if err == nil && flusher != nil {
			flusher.Flush()
		}
		return err
	}
	first := true
	var writeErr error
	page, err := s.svc.Scan(f, func(it queue.Item) error {
		// The end of a batch goes over as {} (the client flushes there too).
		if it.JSON != nil {
			writeErr = writeMessageLine(bw, it.JSON)
		} else {
			writeErr = enc.Encode(listLine{Message: it.Message, Corrupt: it.Corrupt})
		}
		if writeErr == nil && (first || it.BatchEnd()) {
			first = false
			writeErr = flush()
		}
		return writeErr
	})
	switch {
	case writeErr != nil:
		// The client went away (`ptrelay queue list | head`): nothing to tell it.
		s.log.Debug("admin: listing not read to its end", "err", writeErr)
		return
	case err != nil:
		s.log.Warn("admin: listing the queue failed", "err", err)
		_ = enc.Encode(listLine{wireError: toWire(err)})
	default:
		_ = enc.Encode(listLine{End: &page})
	}
	_ = flush()
}

// messageLinePrefix starts the line of a message, as json.Encoder writes listLine{Message: m}.
const messageLinePrefix = `{"message":`

// writeMessageLine writes {"message":JSON} and a newline, as enc.Encode(listLine{Message: m}) would for the
// message that JSON encodes, without encoding it again. The client reads a line per entry: JSON holds no
// newline when json.Marshal made it (it escapes them in strings), and is compacted if it somehow does.
func writeMessageLine(w *bufio.Writer, msg []byte) error {
	if bytes.IndexByte(msg, '\n') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, msg); err != nil {
			return err
		}
		msg = c.Bytes()
	}
	w.WriteString(messageLinePrefix)
	w.Write(msg)
	_, err := w.WriteString("}\n")
	return err
}

func (s *Server) body(w http.ResponseWriter, r *http.Request) {
	rc, err := s.svc.Body(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := io.Copy(w, rc); err != nil {
		// Headers are gone: all we can do is cut the stream, which the client sees as an unexpected EOF.
		s.log.Warn("sending a message body failed", "id", r.PathValue("id"), "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) verb(w http.ResponseWriter, r *http.Request, v Verb) {
	var sel selection
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sel); err != nil {
		writeJSON(w, http.StatusBadRequest, verbResult{wireError: wireError{Error: "bad request: " + err.Error()}})
		return
	}
	if sel.All == (len(sel.IDs) > 0) {
		writeJSON(w, http.StatusBadRequest, verbResult{wireError: wireError{Error: "give message IDs or all, not both and not neither"}})
		return
	}
	n, err := s.svc.Do(v, queue.Selector{IDs: sel.IDs, All: sel.All}, "uid", peerFrom(r.Context()).uid)
	status := http.StatusOK
	if err != nil {
		status = httpStatus(err)
	}
	writeJSON(w, status, verbResult{Count: n, wireError: toWire(err)})
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, queue.ErrReadOnly):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, httpStatus(err), toWire(err))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
