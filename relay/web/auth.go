package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
)

// User is who a request came from, after Basic authentication.
type User struct {
	Name     string
	ReadOnly bool
}

type userKey struct{}

// userFrom returns the authenticated user of a request (the zero User before authentication).
func userFrom(ctx context.Context) User {
	u, _ := ctx.Value(userKey{}).(User)
	return u
}

// maxCachedLogins bounds the verified-credential cache; a console has a handful of users.
const maxCachedLogins = 256

// users checks Basic credentials against the bcrypt hashes of [[web.users]]. A browser sends the credentials
// with every request, page and stylesheet alike, and bcrypt costs ~90 ms at the default cost: so a credential
// that verified once is remembered, keyed by the name and an HMAC of the password under a key that exists only
// in this process (no password, and nothing an attacker could test offline). A reload builds a new table, which
// starts empty.
type users struct {
	list  []config.WebUser
	dummy []byte // a hash compared for unknown names, so that the reply time does not tell which names exist
	key   [32]byte

	mu    sync.Mutex
	cache map[string]struct{}
}

func newUsers(list []config.WebUser) (*users, error) {
	u := &users{list: append([]config.WebUser(nil), list...), cache: map[string]struct{}{}}
	cost := bcrypt.MinCost
	for i, w := range list {
		c, err := bcrypt.Cost([]byte(w.PasswordHash))
		if err != nil {
			return nil, fmt.Errorf("web.users[%d] (%s): password_hash is not a bcrypt hash: make one with `ptrelay hash-password`", i+1, w.Name)
		}
		cost = max(cost, c)
	}
	var err error
	if u.dummy, err = bcrypt.GenerateFromPassword([]byte("ptrelay-no-such-user"), cost); err != nil {
		return nil, err
	}
	if _, err := rand.Read(u.key[:]); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *users) empty() bool { return len(u.list) == 0 }

// check returns the user whose name and password these are. Every configured name is compared, in constant
// time, and a bcrypt comparison is made whether the name exists or not.
func (u *users) check(name, pass string) (User, bool) {
	var found *config.WebUser
	for i := range u.list {
		if subtle.ConstantTimeCompare([]byte(name), []byte(u.list[i].Name)) == 1 {
			found = &u.list[i]
		}
	}
	if found == nil {
		_ = bcrypt.CompareHashAndPassword(u.dummy, []byte(pass))
		return User{}, false
	}
	m := hmac.New(sha256.New, u.key[:])
	m.Write([]byte(pass))
	key := name + "\x00" + string(m.Sum(nil))
	u.mu.Lock()
	_, hit := u.cache[key]
	u.mu.Unlock()
	if !hit {
		if bcrypt.CompareHashAndPassword([]byte(found.PasswordHash), []byte(pass)) != nil {
			return User{}, false
		}
		u.mu.Lock()
		if len(u.cache) >= maxCachedLogins {
			clear(u.cache)
		}
		u.cache[key] = struct{}{}
		u.mu.Unlock()
	}
	return User{Name: found.Name, ReadOnly: found.ReadOnly}, true
}

// Failed logins slow their client down: each failure from an address within failureWindow of the previous one
// doubles the wait before the next 401 (firstFailureDelay, then twice that... up to maxFailureDelay). A person
// who mistyped waits a quarter of a second; a password guesser gets about one try in four seconds per address.
const (
	firstFailureDelay = 250 * time.Millisecond
	maxFailureDelay   = 4 * time.Second
	failureWindow     = 15 * time.Minute
	maxFailureClients = 4096
)

// failures counts recent failed logins per client address.
type failures struct {
	mu      sync.Mutex
	clients map[string]failure
}

type failure struct {
	count int
	last  time.Time
}

// add records a failure of client at now and returns how long to wait before answering it.
func (f *failures) add(client string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients == nil {
		f.clients = map[string]failure{}
	}
	e := f.clients[client]
	if now.Sub(e.last) > failureWindow {
		e.count = 0
	}
	if _, known := f.clients[client]; !known && len(f.clients) >= maxFailureClients {
		f.prune(now)
	}
	e.count++
	e.last = now
	f.clients[client] = e
	d := firstFailureDelay
	for i := 1; i < e.count && d < maxFailureDelay; i++ {
		d *= 2
	}
	return min(d, maxFailureDelay)
}

// prune drops the clients whose failures are past the window, or all of them when none is (a flood from many
// addresses: the bound on memory matters more than their delays).
func (f *failures) prune(now time.Time) {
	for c, e := range f.clients {
		if now.Sub(e.last) > failureWindow {
			delete(f.clients, c)
		}
	}
	if len(f.clients) >= maxFailureClients {
		clear(f.clients)
	}
}

// forget clears a client's failures after it logged in.
func (f *failures) forget(client string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.clients, client)
}

// clientOf names the client for the failure count and the log: its IP address, or "local" on a Unix socket.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "local"
	}
	return host
}

// localUser is who every request is when the console runs without users (loopback or a Unix socket only).
var localUser = User{Name: "local"}

// localHost refuses, on a loopback listener, a request whose Host is not this machine by name or loopback
// address: a web page the admin opens can point its own host name at 127.0.0.1 (DNS rebinding), and its
// requests are then same-origin for the browser, so only the Host header tells them apart.
func (s *Server) localHost(next http.Handler) http.Handler {
	if !s.hostOnly {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
		ip, err := netip.ParseAddr(host)
		if !strings.EqualFold(host, "localhost") && (err != nil || !ip.Unmap().IsLoopback()) {
			s.log.Warn("refused a request for another host name (DNS rebinding?)", "host", r.Host,
				"client", clientOf(r), "path", r.URL.Path)
			s.errorPage(w, r, http.StatusForbidden, "Refused: wrong host name",
				"This console answers only at http://localhost or a loopback address such as http://127.0.0.1: open it there.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate is the outermost gate: Basic authentication (RFC 7617) for every request, then, for a read-only
// user, a 403 for every method but GET and HEAD. With no users configured (local listeners only) every request
// is the local user.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := clientOf(r)
		if s.local && s.users.Load().empty() {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, localUser)))
			return
		}
		name, pass, ok := r.BasicAuth()
		if !ok {
			s.unauthorized(w, r)
			return
		}
		u, ok := s.users.Load().check(name, pass)
		if !ok {
			d := s.failures.add(client, s.now())
			s.log.Warn("login failed", "web_user", name, "client", client, "delay", d)
			s.sleep(r.Context(), d)
			s.unauthorized(w, r)
			return
		}
		s.failures.forget(client)
		if u.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.log.Warn("read-only user refused an action", "web_user", u.Name, "client", client,
				"method", r.Method, "path", r.URL.Path)
			s.errorPage(w, r, http.StatusForbidden, "Read-only user",
				"Your login may look at the queue but not change it. Ask an administrator, or use a user without read_only.")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Basic realm="ptrelay", charset="UTF-8"`)
	s.errorPage(w, r, http.StatusUnauthorized, "Log in",
		"This console needs the name and password of a [[web.users]] entry of ptrelay's configuration.")
}

// sleepCtx waits d or until ctx ends (the client went away).
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
