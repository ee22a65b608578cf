package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay"
	"ptrelay/relay/admin"
)

func alertsUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay alerts <verb> [-json] [-config FILE]")
	fmt.Fprintln(w, "  ptrelay alerts list   the alert conditions that hold, with the fix for each")
	fmt.Fprintln(w, "  ptrelay alerts test   send a test notice on every channel ([alerts] mail_to, webhook_url) and say what happened")
}

func runAlerts(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "test") {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "ptrelay alerts: unknown verb %q\n", args[0])
		}
		alertsUsage(stderr)
		return exitError{2}
	}
	verb := args[0]
	fs := newFlags("alerts "+verb, stderr)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	c, sock, err := dialAdmin(cfg)
	if err != nil && !errors.Is(err, admin.ErrNoDaemon) {
		return err
	}
	if err != nil {
		if verb == "list" {
			return alertsListOffline(cfg, sock, *asJSON, stdout)
		}
		return alertsTestOffline(cfg, sock, *asJSON, stdout)
	}
	defer c.Close()
	if verb == "list" {
		list, err := c.Alerts()
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, orEmpty(list))
		}
		return admin.RenderAlerts(stdout, list)
	}
	res, err := c.AlertsTest()
	if err != nil {
		return err
	}
	return printTestResults(stdout, res, *asJSON)
}

// alertsListOffline shows what held when the daemon stopped, read from its queue database, and exits 3 as
// `ptrelay status` does without a daemon.
func alertsListOffline(cfg *config.Config, sock string, asJSON bool, stdout io.Writer) error {
	st, err := queue.Open(queue.Options{Dir: cfg.DataDir, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("ptrelay is not running (no answer on %s), and its queue database cannot be read: %w", sock, err)
	}
	list, err := relay.OfflineAlerts(cfg, st)
	_ = st.Close()
	if err != nil {
		return err
	}
	if asJSON {
		_ = writeJSON(stdout, struct {
			Running bool          `json:"running"`
			Alerts  []admin.Alert `json:"alerts"`
		}{false, orEmpty(list)})
	} else {
		fmt.Fprintf(stdout, "ptrelay is not running (no answer on %s); the conditions as recorded when it stopped:\n\n", sock)
		_ = admin.RenderAlerts(stdout, list)
	}
	return exitError{3}
}

// alertsTestOffline sends the test notices from this command: webhook and mail_via directly, and alert mail
// without mail_via into the queue, where it waits for the daemon to start.
func alertsTestOffline(cfg *config.Config, sock string, asJSON bool, stdout io.Writer) error {
	var st *queue.Store
	if len(cfg.Alerts.MailTo) > 0 && cfg.Alerts.MailVia == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return err
		}
		var err error
		st, err = queue.Open(queue.Options{Dir: cfg.DataDir})
		if err != nil {
			return fmt.Errorf("ptrelay is not running (no answer on %s), and the queue for the test mail cannot be opened: %w", sock, err)
		}
		defer st.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := relay.OfflineAlertTest(ctx, cfg, st, version)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(stdout, "ptrelay is not running (no answer on %s): sent from this command.\n", sock)
	}
	return printTestResults(stdout, res, asJSON)
}

// printTestResults prints the outcome per channel; any failure makes the exit code 1.
func printTestResults(stdout io.Writer, res []admin.ChannelResult, asJSON bool) error {
	if asJSON {
		if err := writeJSON(stdout, orEmpty(res)); err != nil {
			return err
		}
	} else if err := admin.RenderTestResults(stdout, res); err != nil {
		return err
	}
	for _, r := range res {
		if r.Outcome == "failed" {
			return exitError{1}
		}
	}
	return nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
