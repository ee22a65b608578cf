package main

import (
	"context"
	"io"
	"time"

	"ptrelay/relay/selfcheck"
)

// runCheck is the Knowledge-Base checklist: what receivers will see of this machine, one line per check with
// the fix, then the DKIM lines of the domain's keys and its DMARC line (relay/selfcheck). Exit 0: direct delivery is
// fit; 1: use a smart host, or a DKIM/DMARC line fails (receivers would not verify what ptrelay signs); 2: cannot
// tell.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "", "configuration file")
	domain := fs.String("domain", "", "your sending domain (default: the domain of hostname)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	opts := selfcheck.Options{Domain: *domain}
	if c, _, err := dialAdmin(cfg); err == nil {
		if st, err := c.Status(); err == nil {
			opts.TLSClients = st.TLSClients
		}
		_ = c.Close()
	}
	out, err := selfcheck.Run(ctx, cfg, opts)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		selfcheck.Render(stdout, out)
	}
	if out.Exit != 0 {
		return exitError{out.Exit}
	}
	return nil
}
