package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/admin"
	"ptrelay/relay/dkim"
)

var queueVerbs = map[string]string{
	"list":    "list [-json] [-limit N] [-state S] [-domain D] [-sender A] [-older DURATION]",
	"show":    "show ID [-body] [-json]",
	"delete":  "delete ID... | -all",
	"hold":    "hold ID... | -all",
	"release": "release ID... | -all",
	"retry":   "retry ID... | -all",
	"bounce":  "bounce ID... | -all",
	"compact": "compact (offline: with the daemon stopped)",
}

func queueUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay queue <verb> [flags] (every verb takes -config FILE)")
	for _, v := range []string{"list", "show", "delete", "hold", "release", "retry", "bounce", "compact"} {
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
	var fa admin.FilterArgs
	fs.IntVar(&fa.Limit, "limit", 0, "list: at most N messages (0: all)")
	fs.StringVar(&fa.State, "state", "", "list: messages with a recipient in this state (queued, active, deferred, hold, delivered, bounced)")
	fs.StringVar(&fa.Domain, "domain", "", "list: messages with a recipient at this domain")
	fs.StringVar(&fa.Sender, "sender", "", "list: messages from this sender (an address, @domain, or <> for bounces)")
	fs.Func("older", "list: messages that arrived more than DURATION ago (e.g. 30m, 2h, 3d)", func(v string) error {
		d, err := config.ParseDuration(v)
		fa.Older = d.D()
		return err
	})
	// Flags may come before or after the IDs: `queue delete ID -config F` is as natural as the other order.
	ids, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if verb != "list" && fa != (admin.FilterArgs{}) {
		fmt.Fprintln(stderr, "ptrelay queue: -limit, -state, -domain, -sender and -older select what list shows")
		return exitError{2}
	}
	filter, err := fa.Filter(time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "ptrelay queue list: -%v\n", err)
		return exitError{2}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if verb == "compact" {
		if len(ids) > 0 {
			fmt.Fprintf(stderr, "usage: ptrelay queue %s\n", queueVerbs[verb])
			return exitError{2}
		}
		return compactQueue(cfg, stdout)
	}
	q, closeQueue, err := openQueue(cfg, verb == "list" || verb == "show")
	if err != nil {
		return err
	}
	defer closeQueue()

	switch verb {
	case "list":
		return listQueue(q, filter, *asJSON, stdout)
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
		return admin.RenderShowWith(stdout, m, rc, admin.ShowOptions{Body: *body, Signing: signingLine(cfg)})
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

// listQueue prints the listing as it arrives, from the daemon or from the database: the first message is on
// the terminal before the last is read, and memory does not grow with the queue.
func listQueue(q admin.Queue, f queue.Filter, asJSON bool, stdout io.Writer) error {
	if os.Getenv("GOGC") == "" {
		// A listing allocates and drops a message at a time: the live heap stays at a few MB, and collecting
		// less often took a tenth off a 100,000-message listing.
		debug.SetGCPercent(400)
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	var r admin.ListRenderer
	if asJSON {
		r = admin.NewJSONListWriter(out)
	} else {
		r = admin.NewListWriter(out, time.Now(), !f.SelectsAll())
	}
	first := true
	page, err := q.Scan(f, func(it queue.Item) error {
		if err := r.Item(it); err != nil {
			return err
		}
		// The head of a long listing shows at once, and what a batch found shows before the next is read.
		if first || it.BatchEnd() {
			first = false
			return out.Flush()
		}
		return nil
	})
	if err != nil {
		_ = out.Flush()
		return err
	}
	var quarantined []queue.CorruptRecord
	if f.SelectsAll() {
		if quarantined, err = q.Corrupt(); err != nil {
			_ = out.Flush()
			return err
		}
	}
	if err := r.Finish(page, quarantined); err != nil {
		return err
	}
	return out.Flush()
}

// compactQueue runs queue.Compact, which needs the database to itself: with the daemon running it refuses
// before trying (the socket answers), and a lock held by anything else is refused by the queue.
func compactQueue(cfg *config.Config, stdout io.Writer) error {
	if c, sock, err := dialAdmin(cfg); err == nil {
		_ = c.Close()
		return fmt.Errorf("the daemon is running (it answers on %s): compact works on a stopped queue; stop the daemon (systemctl stop ptrelay), run ptrelay queue compact, then start it again", sock)
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return fmt.Errorf("no queue to compact at %s (data_dir): %w", cfg.DataDir, err)
	}
	res, err := queue.Compact(queue.Options{Dir: cfg.DataDir})
	if errors.Is(err, queue.ErrLocked) {
		return fmt.Errorf("the queue in %s is in use by another process (the daemon, or another ptrelay command): stop the daemon (systemctl stop ptrelay) and let other commands finish, then run ptrelay queue compact again", cfg.DataDir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %s -> %s (%d %s, %d quarantined)\n", cfg.DataDir, fileSize(res.Before),
		fileSize(res.After), res.Messages, plural(res.Messages, "message"), res.Quarantined)
	return nil
}

func fileSize(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", (n+1023)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
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

// signingLine says which DKIM key will sign a message, from the configuration alone (the admin's shell may
// not read the keys); nil without [dkim] keys.
func signingLine(cfg *config.Config) func(header []byte) string {
	s := dkim.Describe(cfg)
	if s == nil {
		return nil
	}
	return func(header []byte) string {
		return s.Plan(header).Will()
	}
}
