package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/admin"
)

var queueVerbs = map[string]string{
	"list":    "list [-json]",
	"show":    "show ID [-body] [-json]",
	"delete":  "delete ID... | -all",
	"hold":    "hold ID... | -all",
	"release": "release ID... | -all",
	"retry":   "retry ID... | -all",
	"bounce":  "bounce ID... | -all",
}

func queueUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay queue <verb> [flags] (every verb takes -config FILE)")
	for _, v := range []string{"list", "show", "delete", "hold", "release", "retry", "bounce"} {
		fmt.Fprintf(w, "  ptrelay queue %s\n", queueVerbs[v])
	}
}

func runQueue(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		queueUsage(stderr)
		return exitError{2}
	}
	verb := args[0]
	if _, ok := queueVerbs[verb]; !ok {
		fmt.Fprintf(stderr, "ptrelay queue: unknown verb %q\n", verb)
		queueUsage(stderr)
		return exitError{2}
	}
	fs := newFlags("queue "+verb, stderr)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	body := fs.Bool("body", false, "show: print the whole message body")
	all := fs.Bool("all", false, "act on every message in the queue")
	// Flags may come before or after the IDs: `queue delete ID -config F` is as natural as the other order.
	ids, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, _, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("configuration: %v", joinLines(err))
	}
	q, closeQueue, err := openQueue(cfg, verb == "list" || verb == "show")
	if err != nil {
		return err
	}
	defer closeQueue()

	switch verb {
	case "list":
		msgs, err := q.List()
		if err != nil {
			return err
		}
		corrupt, err := q.Corrupt()
		if err != nil {
			return err
		}
		if *asJSON {
			if msgs == nil {
				msgs = []*queue.Message{}
			}
			return writeJSON(stdout, struct {
				Messages []*queue.Message      `json:"messages"`
				Corrupt  []queue.CorruptRecord `json:"corrupt,omitempty"`
			}{msgs, corrupt})
		}
		return admin.RenderList(stdout, msgs, corrupt, time.Now())
	case "show":
		if len(ids) != 1 {
			fmt.Fprintln(stderr, "usage: ptrelay queue show ID [-body] [-json]")
			return exitError{2}
		}
		m, err := q.Get(ids[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, m)
		}
		rc, err := q.Body(m.ID)
		if err != nil {
			return err
		}
		defer rc.Close()
		return admin.RenderShow(stdout, m, rc, *body)
	}

	if len(ids) == 0 && !*all {
		fmt.Fprintf(stderr, "usage: ptrelay queue %s\n", queueVerbs[verb])
		return exitError{2}
	}
	if len(ids) > 0 && *all {
		fmt.Fprintln(stderr, "ptrelay queue: give message IDs or -all, not both")
		return exitError{2}
	}
	sel := queue.Selector{IDs: ids, All: *all}
	act := map[string]func(queue.Selector) (int, error){
		"delete": q.Delete, "hold": q.Hold, "release": q.Release, "retry": q.Retry, "bounce": q.Bounce,
	}[verb]
	n, err := act(sel)
	fmt.Fprintf(stdout, "%s: %d message(s)\n", verb, n)
	return err
}

// openQueue reaches the running daemon through its admin socket; with no daemon it opens the database itself
// (bbolt locks the file, so while the daemon runs the socket is the only way in).
func openQueue(cfg *config.Config, readOnly bool) (admin.Queue, func(), error) {
	c, sock, err := dialAdmin(cfg)
	if err == nil {
		return c, func() { _ = c.Close() }, nil
	}
	if !errors.Is(err, admin.ErrNoDaemon) {
		// A daemon is there but refuses us (permissions): opening the database would only time out on its lock.
		return nil, nil, err
	}
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no queue at %s (data_dir) and no daemon answering on %s: is this the right -config?", cfg.DataDir, sock)
	}
	st, err := queue.Open(queue.Options{Dir: cfg.DataDir, ReadOnly: readOnly})
	if errors.Is(err, fs.ErrPermission) {
		return nil, nil, fmt.Errorf("%w: the queue in %s (data_dir) belongs to the service: run this command as root (sudo)", err, cfg.DataDir)
	}
	if errors.Is(err, queue.ErrLocked) {
		return nil, nil, fmt.Errorf("the daemon holds the queue in %s but its admin socket %s does not answer: check admin.socket and that you may use it (run as root or the ptrelay user)", cfg.DataDir, sock)
	}
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// systemdSocket is where the packaged unit's daemon listens (RuntimeDirectory=ptrelay): an admin's shell has no
// $RUNTIME_DIRECTORY, so the CLI tries it after the configured socket.
const systemdSocket = "/run/ptrelay/admin.sock"

// dialAdmin reaches the daemon through the configured admin socket, or the packaged unit's. It returns
// admin.ErrNoDaemon only when neither answers.
func dialAdmin(cfg *config.Config) (*admin.Client, string, error) {
	sock := cfg.AdminSocket()
	c, err := admin.Dial(sock)
	if err == nil || !errors.Is(err, admin.ErrNoDaemon) || sock == systemdSocket || cfg.Admin.Socket != "" {
		return c, sock, err
	}
	if c2, err2 := admin.Dial(systemdSocket); !errors.Is(err2, admin.ErrNoDaemon) {
		return c2, systemdSocket, err2
	}
	return nil, sock, err
}
