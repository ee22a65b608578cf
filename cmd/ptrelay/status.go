package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/admin"
)

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("configuration: %v", joinLines(err))
	}
	c, sock, err := dialAdmin(cfg)
	if err != nil && !errors.Is(err, admin.ErrNoDaemon) {
		return err
	}
	if err != nil {
		// No daemon: say so, and still show what the queue holds.
		st := admin.Status{Version: version}
		if store, err := queue.Open(queue.Options{Dir: cfg.DataDir, ReadOnly: true}); err == nil {
			st.Queue, _ = store.Stats()
			_ = store.Close()
		}
		st.SetDurations(time.Now())
		if *asJSON {
			_ = writeJSON(stdout, struct {
				Running bool `json:"running"`
				admin.Status
			}{false, st})
		} else {
			fmt.Fprintf(stdout, "ptrelay is not running (no answer on %s)\n", sock)
			_ = admin.RenderStatus(stdout, st)
		}
		return exitError{3}
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, struct {
			Running bool `json:"running"`
			admin.Status
		}{true, st})
	}
	return admin.RenderStatus(stdout, st)
}
