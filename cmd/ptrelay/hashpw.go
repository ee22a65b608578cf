package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
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
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
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
