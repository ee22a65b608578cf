package main

import (
	"fmt"
	"io"
	"strings"

	"ptrelay/queue"
	"ptrelay/relay"
	"ptrelay/relay/admin"
)

func mtastsUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay mtasts <verb> [DOMAIN] [-json] [-config FILE]")
	fmt.Fprintln(w, "  ptrelay mtasts show [DOMAIN]    the cached MTA-STS policies (of DOMAIN), when each expires, the last error")
	fmt.Fprintln(w, "  ptrelay mtasts flush [DOMAIN]   drop them: the next delivery looks the policy up again (a partner fixed")
	fmt.Fprintln(w, "                                  a broken policy without changing its id)")
}

// runMTASTS shows or drops cached MTA-STS policies, through the daemon's admin socket, or in the queue database
// when no daemon runs; the output is the same either way.
func runMTASTS(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "flush") {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "ptrelay mtasts: unknown verb %q\n", args[0])
		}
		mtastsUsage(stderr)
		return exitError{2}
	}
	verb := args[0]
	fs := newFlags("mtasts "+verb, stderr)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON (show)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		mtastsUsage(stderr)
		return exitError{2}
	}
	domain := ""
	if len(pos) == 1 {
		domain = strings.ToLower(strings.TrimSuffix(pos[0], "."))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	q, closeQ, err := openQueue(cfg, verb == "show")
	if err != nil {
		return err
	}
	defer closeQ()
	if verb == "flush" {
		var n int
		switch q := q.(type) {
		case *admin.Client:
			n, err = q.MTASTSFlush(domain)
		case *queue.Store:
			n, err = relay.OfflineMTASTSFlush(q, domain)
		}
		if err != nil {
			return err
		}
		what := "all domains"
		if domain != "" {
			what = domain
		}
		entries := "entries"
		if n == 1 {
			entries = "entry"
		}
		fmt.Fprintf(stdout, "Dropped %d cached MTA-STS %s (%s); the next delivery looks the policy up again.\n", n, entries, what)
		return nil
	}
	var list []admin.MTASTSPolicy
	switch q := q.(type) {
	case *admin.Client:
		list, err = q.MTASTS(domain)
	case *queue.Store:
		list, err = relay.OfflineMTASTS(q, domain)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, orEmpty(list))
	}
	return admin.RenderMTASTS(stdout, list)
}
