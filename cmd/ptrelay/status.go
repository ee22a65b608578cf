package main

import (
	"errors"
	"fmt"
	"io"
	"time"

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
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	c, sock, err := dialAdmin(cfg)
	if err != nil && !errors.Is(err, admin.ErrNoDaemon) {
		return err
	}
	if err != nil {
		// No daemon: say so, and still show what the queue holds.
		st := admin.Status{Version: version}
		store, err := queue.Open(queue.Options{Dir: cfg.DataDir, ReadOnly: true})
		if errors.Is(err, queue.ErrLocked) {
			// bbolt's lock is held: a daemon runs on this data_dir, but not on the socket this configuration names.
			return fmt.Errorf("ptrelay is running (it holds the queue database in %s) but does not answer on %s: "+
				"it listens elsewhere (is this the configuration it runs with? see admin.socket) or refuses this "+
				"user (run as root or as a member of admin.socket_group)", cfg.DataDir, sock)
		}
		if err == nil {
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
