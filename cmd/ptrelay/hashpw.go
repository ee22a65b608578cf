package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// stdin is replaced in tests.
var stdin io.Reader = os.Stdin

func runHashPassword(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("hash-password", stderr)
	fs.String("config", "", "ignored")
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (10 takes about 90 ms per check on a small server)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var pw string
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		var err error
		if pw, err = promptPassword(f, stderr); err != nil {
			return err
		}
	} else {
		// A pipe (echo 'secret' | ptrelay hash-password): the first line is the password.
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return errors.New("no password on stdin: run `echo 'secret' | ptrelay hash-password` or type it and press Enter")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
	if err != nil {
		return fmt.Errorf("hashing: %w (bcrypt takes at most 72 bytes)", err)
	}
	fmt.Fprintln(stdout, string(hash))
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptPassword asks twice on the terminal, with echo off (as passwd does), and writes the prompts to stderr so
// that stdout holds only the hash.
func promptPassword(tty *os.File, prompts io.Writer) (string, error) {
	r := bufio.NewReader(tty)
	fmt.Fprint(prompts, "Password: ")
	pw, err := readNoEcho(tty, r)
	fmt.Fprintln(prompts)
	if err != nil || pw == "" {
		return pw, err
	}
	fmt.Fprint(prompts, "Retype password: ")
	again, err := readNoEcho(tty, r)
	fmt.Fprintln(prompts)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passwords differ: run ptrelay hash-password again")
	}
	return pw, nil
}

// readNoEcho reads one line from the terminal with echo off, and restores the terminal however the read ends,
// Ctrl-C included (a shell left without echo is the classic bug of hand-written prompts).
func readNoEcho(tty *os.File, r *bufio.Reader) (string, error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("reading the terminal settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turning the terminal's echo off: %w", err)
	}
	restore := func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
	defer restore()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sig:
			restore()
			fmt.Fprintln(os.Stderr)
			os.Exit(128 + int(s.(syscall.Signal)))
		case <-done:
		}
	}()
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
