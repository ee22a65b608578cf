// Command ptrelay is the outbound mail relay: `ptrelay serve` runs it, the other subcommands inspect and act on
// it. This package only wires flags to the packages that do the work; it holds no logic of its own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"ptrelay/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries the process exit code for a failure already reported to the user.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type command struct {
	usage string
	help  string
	run   func(args []string, stdout, stderr io.Writer) error
}

// commands is the table of subcommands; "queue" and "config" have their own verb tables.
var commands = map[string]command{
	"serve":         {"serve [-config FILE] [-log-format text|json]", "run the relay in the foreground", runServe},
	"check":         {"check [-config FILE] [-domain D] [-json]", "check this machine's egress IP, PTR and DNS the way receivers will", runCheck},
	"queue":         {"queue list|show|delete|hold|release|retry|bounce|compact ...", "inspect and act on the queue", runQueue},
	"status":        {"status [-config FILE] [-json]", "show the running relay's state", runStatus},
	"config":        {"config check [-config FILE]", "validate the configuration and print it with secrets redacted", runConfig},
	"hash-password": {"hash-password", "ask for a password (or read a line on stdin) and print its bcrypt hash for [[smtp.users]] or [[web.users]]", runHashPassword},
	"send":          {"send -to ADDR [-from ADDR] [-server HOST:PORT] [-user U ...]", "send a test message through a relay", runSend},
	"version":       {"version", "print the version", runVersion},
	"alerts":        {"alerts list|test [-json]", "the alert conditions that hold / send a test notice per channel", runAlerts},
	"mtasts":        {"mtasts show|flush [DOMAIN] [-json]", "the cached MTA-STS policies of recipient domains / drop them", runMTASTS},
	"dkim":          {"dkim keygen -domain D -selector S [-algo rsa|ed25519] | show [-json]", "make a DKIM key / print the DNS records of the configured keys", runDKIM},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ptrelay: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(args[1:], stdout, stderr)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "ptrelay %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-60s %s\n", commands[n].usage, commands[n].help)
	}
	fmt.Fprintln(w, "\nEvery command takes -config FILE; otherwise $PTRELAY_CONFIG, /etc/ptrelay/ptrelay.toml, or the built-in defaults.")
}

// newFlags makes a flag set that prints its errors and usage to stderr and never exits the process.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ptrelay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns a usage error into exit code 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{2}
	}
	return nil
}

// joinLines indents a multi-line error for the terminal.
// loadConfig loads the configuration as every command but serve and config check does: its problems, one per
// line, are the command's error.
func loadConfig(path string) (*config.Config, error) {
	cfg, _, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("configuration: %v", joinLines(err))
	}
	return cfg, nil
}

func joinLines(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "\n  ")
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	fs.String("config", "", "ignored")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ptrelay %s\n", version)
	return nil
}
