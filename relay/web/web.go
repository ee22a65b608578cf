// Package web is ptrelay's web console: the status, the queue with its actions, one message and `ptrelay
// check`, as server-rendered HTML (html/template, embedded with the stylesheet; no JavaScript, nothing from
// elsewhere). It is a front end of admin.Service, the service the admin socket answers with, so a page and
// `ptrelay queue list` show the same queue and an action here is the one `ptrelay queue retry` takes, logged
// with the web user's name.
//
// Every request passes, in order: the security headers (CSP, nosniff, no referrer, no caching), Basic
// authentication against bcrypt hashes (with a growing delay after failures per client), a 403 for any action
// of a read-only user, net/http.CrossOriginProtection (a POST from another site's page is refused: the browser
// sends Basic credentials with it as it would cookies), and the mux. Actions are POST forms answered with 303
// See Other; GET never changes anything. The package knows nothing of SMTP, delivery or DNS.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"ptrelay/config"
	"ptrelay/relay/admin"
	"ptrelay/relay/httpserve"
	"ptrelay/relay/selfcheck"
)

// Options are the console's inputs.
type Options struct {
	// Service is the daemon's admin service (admin.Server.Service): queue, status and actions.
	Service *admin.Service
	// Check runs `ptrelay check` with the daemon's configuration and resolver; nil: the check page says it is
	// not available.
	Check func(context.Context) (selfcheck.Result, error)
	// Certificate returns the certificate for HTTPS, asked at every handshake (so a reload applies to new
	// connections); nil: plain HTTP.
	Certificate func() (*tls.Certificate, error)
	// Listen is web.listen. On a loopback address the console answers only requests whose Host names this
	// machine (a DNS-rebinding page in the admin's browser names its own host), and, like a Unix socket, it may
	// run without users.
	Listen string
	Log    *slog.Logger
	// Now and Location replace the clock and the local time zone (tests); zero: time.Now and time.Local.
	Now      func() time.Time
	Location *time.Location
}

// Server is the web console.
type Server struct {
	svc      *admin.Service
	check    func(context.Context) (selfcheck.Result, error)
	checking chan struct{} // one check at a time: a second request waits for the first to finish
	cert     func() (*tls.Certificate, error)
	log      *slog.Logger
	now      func() time.Time
	loc      *time.Location
	pages    pages

	users    atomic.Pointer[users]
	local    bool // only this machine reaches the listener: the console may run without users
	hostOnly bool // a loopback TCP listener: only Host headers naming this machine are answered
	failures failures
	sleep    func(context.Context, time.Duration) // the failure delay; tests record it instead
}

// New builds the console for these users. With none, which config.Validate allows only on loopback or a Unix
// socket, every request is served as the local user "local" (the tunnel or the socket's mode is the gate).
func New(list []config.WebUser, o Options) (*Server, error) {
	if o.Service == nil {
		return nil, errors.New("web: no admin service")
	}
	s := &Server{svc: o.Service, check: o.Check, checking: make(chan struct{}, 1), cert: o.Certificate,
		log: o.Log, now: o.Now, loc: o.Location, sleep: sleepCtx}
	if o.Listen != "" {
		w := config.Web{Listen: o.Listen}
		_, unix := w.UnixSocket()
		s.local, s.hostOnly = w.LocalOnly(), w.LocalOnly() && !unix
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if err := s.SetUsers(list); err != nil {
		return nil, err
	}
	return s, nil
}

// SetUsers replaces the users (a reload); the failure counts stay.
func (s *Server) SetUsers(list []config.WebUser) error {
	if len(list) == 0 && !s.local {
		return errors.New("web.users is empty: add a [[web.users]] table (run `ptrelay hash-password`)")
	}
	u, err := newUsers(list)
	if err != nil {
		return err
	}
	s.users.Store(u)
	return nil
}

// Handler is the console with every protection in front of it (see the package comment).
func (s *Server) Handler() http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("refused a cross-origin request", "web_user", userFrom(r.Context()).Name,
			"client", clientOf(r), "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"),
			"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		s.errorPage(w, r, http.StatusForbidden, "Refused: the request came from another site",
			"Actions are accepted only from the console's own pages. Open the console and use its buttons.")
	}))
	return securityHeaders(s.localHost(s.authenticate(csrf.Handler(s.routes()))))
}

// securityHeaders sets on every answer, errors included: a CSP that allows only the console's own stylesheet
// and forms (no script at all, no framing), no MIME sniffing, no Referer (queue IDs and addresses are in URLs),
// and no caching (pages show mail addresses; the browser must not keep them).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// Listen opens the listener for web.listen: "unix:/path" is a Unix socket of mode 0600, or 0660 owned by gid
// when gid >= 0; anything else is a TCP host:port.
func Listen(listen string, gid int) (net.Listener, error) {
	path, ok := config.Web{Listen: listen}.UnixSocket()
	if !ok {
		return net.Listen("tcp", listen)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("giving the socket to group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStale deletes a socket file nobody answers on; anything else at the path is an error.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s: a file that is not a socket is in the way; remove it or change web.listen", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another process answers on it (is ptrelay already running?)", path)
	}
	return os.Remove(path)
}

// ServeListener answers on ln (HTTPS when Options.Certificate is set) until ctx ends.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// A check runs up to two minutes and a body may be large; the bound only stops a reader that stopped.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.cert != nil {
		tc := &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert()
			},
		}
		ln = tls.NewListener(ln, tc)
	}
	return httpserve.Serve(ctx, srv, ln)
}
