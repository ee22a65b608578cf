package admin

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// helperEnv makes the test binary act as an admin client (see TestMain): the peer tests run a copy of it as
// another user, so the real Client meets the real server's checks.
const helperEnv = "PTRELAY_ADMIN_HELPER_SOCKET"

// helperClient dials and lists, and prints one line saying how far it got.
func helperClient(sock string) int {
	c, err := Dial(sock)
	switch {
	case errors.Is(err, ErrNoDaemon):
		fmt.Println("dial nodaemon:", err)
		return 0
	case errors.Is(err, fs.ErrPermission):
		fmt.Println("dial permission:", err)
		return 0
	case err != nil:
		fmt.Println("dial other:", err)
		return 0
	}
	defer c.Close()
	if _, err := c.Scan(queue.Filter{}, func(queue.Item) error { return nil }); err != nil {
		if errors.Is(err, ErrForbidden) {
			fmt.Println("call forbidden:", err)
		} else {
			fmt.Println("call other:", err)
		}
		return 0
	}
	fmt.Println("ok")
	return 0
}

func statGid(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Gid)
}

// asNobody runs the helper client as nobody:nogroup with no supplementary groups and returns its line.
func asNobody(t *testing.T, bin, sock string) string {
	t.Helper()
	cmd := exec.Command(relaytest.Path(t, "setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups", bin)
	cmd.Env = []string{helperEnv + "=" + sock, "PATH=/usr/bin:/bin"}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("the helper client did not finish")
	}
	if err != nil {
		t.Fatalf("helper client: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestAdmin_NonRootRefused checks both locks on the socket against a real unprivileged process: the file mode
// (0600: nobody cannot even connect), the peer-credential check behind it (socket loosened to 0666 by hand:
// nobody connects and is refused), and the group that lets members in (0660 + nogroup: nobody is served).
func TestAdmin_NonRootRefused(t *testing.T) {
	testkit.RequireRoot(t, "it runs a client as nobody")
	relaytest.Require(t, "setpriv")

	// A directory nobody may traverse, holding a copy of this test binary nobody may run.
	dir, err := os.MkdirTemp("", "ptrelay-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "admin.test")
	copyFile(t, os.Args[0], bin, 0o755)

	t.Run("mode 0600", func(t *testing.T) {
		sock := filepath.Join(dir, "a.sock")
		serve(t, NewServer(fakeQueue{}, nil, nil, nil), sock, "")
		if got := asNobody(t, bin, sock); !strings.HasPrefix(got, "dial permission:") {
			t.Errorf("nobody against a 0600 socket: %q, want a permission error", got)
		}
	})
	t.Run("credentials check", func(t *testing.T) {
		sock := filepath.Join(dir, "b.sock")
		serve(t, NewServer(fakeQueue{}, nil, nil, nil), sock, "")
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		got := asNobody(t, bin, sock)
		if !strings.HasPrefix(got, "call forbidden:") || !strings.Contains(got, "uid 65534") {
			t.Errorf("nobody against a loosened socket: %q, want refused by the credentials check", got)
		}
	})
	t.Run("group member", func(t *testing.T) {
		sock := filepath.Join(dir, "c.sock")
		serve(t, NewServer(fakeQueue{}, nil, nil, nil), sock, "nogroup")
		if got := asNobody(t, bin, sock); got != "ok" {
			t.Errorf("nobody in group nogroup: %q, want served", got)
		}
	})
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
