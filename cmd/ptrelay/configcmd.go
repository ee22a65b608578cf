package main

import (
	"fmt"
	"io"
	"log/slog"

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
	// What the files hold: a certificate and key that do not match are refused here as serve and reload refuse
	// them, so "check, then reload" holds; what this shell cannot see (systemd credentials) is said once.
	found := cfg.CheckSecrets(config.SecretsOptions{})
	printFindings(stderr, "ptrelay config check", found)
	if config.Refused(found) != nil {
		return exitError{1}
	}
	return nil
}

// printFindings writes CheckSecrets' findings, one per line, with their weight.
func printFindings(w io.Writer, prefix string, found []config.Finding) {
	for _, f := range found {
		word := "note"
		switch {
		case f.Refuse:
			word = "error"
		case f.Level >= slog.LevelWarn:
			word = "warning"
		}
		fmt.Fprintf(w, "%s: %s: %s\n", prefix, word, f.Msg)
	}
}
