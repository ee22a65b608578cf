package admin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// access decides who may use the socket: root, the daemon's own user, and members of the configured group.
// File permissions already say the same; checking the peer's credentials as well keeps the rule when the socket
// mode is loosened by hand or by a umask race at creation.
type access struct {
	self  int // the daemon's uid
	group int // gid whose members are let in; -1 for none
}

func newAccess(group string) (*access, error) {
	a := &access{self: os.Getuid(), group: -1}
	if group == "" {
		return a, nil
	}
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, lerr := user.LookupGroup(group)
		if lerr != nil {
			return nil, fmt.Errorf("admin socket group %q: %w", group, lerr)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("admin socket group %q: gid %q is not a number", group, g.Gid)
		}
	}
	a.group = gid
	return a, nil
}

// peer is the other end of an admin connection, from SO_PEERCRED.
type peer struct {
	ok            bool // credentials were read
	uid, gid, pid int
}

type peerKey struct{}

// withPeer is the http.Server ConnContext hook: it reads the credentials once per connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{uid: -1, gid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
				if err == nil {
					p = peer{ok: true, uid: int(cred.Uid), gid: int(cred.Gid), pid: int(cred.Pid)}
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerFrom(ctx context.Context) peer {
	p, ok := ctx.Value(peerKey{}).(peer)
	if !ok {
		return peer{uid: -1, gid: -1}
	}
	return p
}

func (a *access) allows(p peer) bool {
	if !p.ok {
		return false
	}
	if p.uid == 0 || p.uid == a.self {
		return true
	}
	if a.group < 0 {
		return false
	}
	return p.gid == a.group || a.supplementary(p)
}

// supplementary looks for the group among the peer's supplementary groups, which SO_PEERCRED does not carry:
// first in /proc (what the process has now), then in the group database (what the user is given at login).
func (a *access) supplementary(p peer) bool {
	if p.pid > 0 {
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid)); err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
					for _, g := range strings.Fields(rest) {
						if g == strconv.Itoa(a.group) {
							return true
						}
					}
				}
			}
		}
	}
	u, err := user.LookupId(strconv.Itoa(p.uid))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, g := range gids {
		if g == strconv.Itoa(a.group) {
			return true
		}
	}
	return false
}

// guard refuses every request from a peer access does not allow, before any handler sees it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.access
		if a == nil {
			a = &access{self: os.Getuid(), group: -1}
		}
		p := peerFrom(r.Context())
		if !a.allows(p) {
			s.log.Warn("refused a client", "uid", p.uid, "gid", p.gid, "pid", p.pid)
			w.Header().Set("Connection", "close")
			writeError(w, fmt.Errorf("%w: uid %d may not use it; run the command as root or as ptrelay's own user%s",
				ErrForbidden, p.uid, a.hint()))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *access) hint() string {
	if a.group < 0 {
		return ""
	}
	return fmt.Sprintf(", or as a member of group %d", a.group)
}
