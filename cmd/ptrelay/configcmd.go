package main

import (
	"fmt"
	"io"

	"ptrelay/config"
)

func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: ptrelay config check [-config FILE]")
		return exitError{2}
	}
	fs := newFlags("config check", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, source, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ptrelay config check: the configuration has errors:\n  %s\n", joinLines(err))
		return exitError{1}
	}
	fmt.Fprintf(stdout, "# effective configuration (from %s; secrets redacted)\n", source)
	if err := cfg.WriteRedacted(stdout); err != nil {
		return err
	}
	// The smart host's password is read by the daemon, often from systemd credentials this shell cannot see:
	// say what is missing here, but only `serve` refuses to run without it.
	if err := cfg.CheckSecrets(); err != nil {
		fmt.Fprintf(stderr, "ptrelay config check: warning (the daemon will refuse to start unless it can read the password):\n  %s\n", joinLines(err))
	}
	return nil
}
