package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// listenHint is the fix sentence for a listener that cannot be opened, by the reason the kernel gave.
func listenHint(err error, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("another program listens there (often the system's own Postfix or Exim on port 25): "+
			"find it with `ss -ltnp 'sport = :%s'` and stop it, or listen on another address", port)
	case errors.Is(err, syscall.EACCES), errors.Is(err, fs.ErrPermission):
		return "ports below 1024 need root or CAP_NET_BIND_SERVICE: start ptrelay with the packaged systemd unit " +
			"(it grants that capability), or listen on a port above 1023 such as 2525"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "this machine has no such address: write one of its addresses (ip -brief address), or \":" + port +
			"\" for all of them"
	}
	return "check the address"
}

// dataDirHint is the fix sentence for a data_dir the daemon may not write: who it runs as, and the two ways out.
func dataDirHint(err error, dir string) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	who := "uid " + strconv.Itoa(os.Getuid())
	if u, uerr := user.Current(); uerr == nil {
		who = u.Username + " (" + who + ")"
	}
	uid := strconv.Itoa(os.Getuid())
	return fmt.Sprintf(": ptrelay runs as %s, which may not write there: give it the directory (mkdir -p %s && "+
		"chown -R %s %s), or set data_dir to a directory it owns (under systemd, StateDirectory=ptrelay makes "+
		"/var/lib/ptrelay)", who, dir, uid, dir)
}
