package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// openPTY returns a pseudo-terminal pair: the side a program reads as its terminal (pts) and the side that plays
// the keyboard and screen (ptmx).
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// TestHashPassword_Terminal: on a terminal, hash-password prompts (on stderr), does not echo what is typed, asks
// twice, prints only the hash on stdout, and leaves the terminal's echo on.
func TestHashPassword_Terminal(t *testing.T) {
	bin := relaytest.BuildBinary(t)
	ptmx, pts := openPTY(t)
	var screen bytes.Buffer
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	shown := func() string { mu.Lock(); defer mu.Unlock(); return screen.String() }
	var stdout bytes.Buffer
	cmd := exec.Command(bin, "hash-password", "-cost", "4")
	cmd.Stdin, cmd.Stderr, cmd.Stdout = pts, pts, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for _, prompt := range []string{"Password: ", "Retype password: "} {
		testkit.WaitForExplained(t, 20*time.Second, shown, func() bool { return strings.HasSuffix(shown(), prompt) })
		if _, err := ptmx.Write([]byte("s3cret pass\n")); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hash-password: %v; screen %q", err, shown())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("hash-password did not finish; screen %q", shown())
	}
	if strings.Contains(shown(), "s3cret") {
		t.Errorf("the password was echoed: %q", shown())
	}
	hash := strings.TrimSpace(stdout.String())
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")) != nil {
		t.Errorf("stdout %q is not the hash of the typed password", stdout.String())
	}
	tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("the terminal's echo was left off (%v)", err)
	}
}
