package relaytest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

// SinkOptions configures an smtp-sink destination.
type SinkOptions struct {
	// Addr is where the sink listens, "127.0.0.3:0" style; port 0 or "" picks a free port. Default
	// "127.0.0.1:0".
	Addr string
	// Reject maps SMTP commands (CONNECT, HELO, EHLO, MAIL, RCPT, DATA, ".", RSET, QUIT...) to the reply the sink
	// gives them instead of accepting, e.g. {"RCPT": "550 5.1.1 No such user"}. smtp-sink has one hard (5xx)
	// and one soft (4xx) reply text: every 5xx entry must carry the same text, and every 4xx entry too. It
	// rejects every instance of the command; per-recipient outcomes need an in-process fake peer.
	Reject map[string]string
	// Disconnect lists commands after which the sink hangs up without replying (smtp-sink -q).
	Disconnect []string
	// Close421 lists commands answered with 421 and a hang-up (smtp-sink -Q).
	Close421 []string
	// Hostname is announced in the greeting and the EHLO reply. Default "sink.test".
	Hostname string
	// NoDump turns message capture off (for load): Messages then returns nothing, MessageCount still counts.
	NoDump bool
	// Args are extra smtp-sink options placed before the address (see man smtp-sink).
	Args []string
}

// SinkMessage is one mail transaction captured by smtp-sink.
type SinkMessage struct {
	From       string   // MAIL FROM address without brackets ("" for the null sender)
	MailArgs   string   // the whole MAIL FROM argument, with parameters: "<a@b> SIZE=12 BODY=8BITMIME"
	To         []string // RCPT TO addresses without brackets, in the order sent
	RcptArgs   []string // the whole RCPT TO arguments, with parameters
	Helo       string   // the last HELO/EHLO argument before the transaction
	ClientAddr string   // the client's IP address (IPv6 without the "ipv6:" prefix)
	// Data is the message (header and body) as received, dot-unstuffed, with every line ending in "\n":
	// smtp-sink writes LF line ends, so CRLF and LF in the original cannot be told apart.
	Data []byte
	File string // the dump file, for failure messages
}

// Header parses the message header.
func (m SinkMessage) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return mail.Header{}
	}
	return msg.Header
}

// Body returns what follows the first empty line of Data.
func (m SinkMessage) Body() []byte {
	if i := bytes.Index(m.Data, []byte("\n\n")); i >= 0 {
		return m.Data[i+2:]
	}
	return nil
}

// Sink is a running smtp-sink.
type Sink struct {
	addr    string
	dir     string
	proc    *process
	mu      sync.Mutex
	connect int // "connect" lines in the verbose log, probe included
	probes  int // probe sessions seen (HELO relaytest-probe)
	mesg    int // last "mesg=N" counter: transactions ended with "."
	// greeter421: the sink answers every connection with 421 (Close421: CONNECT), so its probe is the greeting.
	greeter421 bool
}

const probeHelo = "relaytest-probe"

// StartSink starts smtp-sink on loopback, waits until it answers, and stops it when the test ends.
func StartSink(t testing.TB, opt SinkOptions) *Sink {
	t.Helper()
	bin := Path(t, "smtp-sink")
	host, port, pick := splitAddr(t, opt.Addr, "127.0.0.1")
	base := []string{"-v", "-c"}
	if opt.Hostname == "" {
		opt.Hostname = "sink.test"
	}
	base = append(base, "-h", opt.Hostname)
	if os.Geteuid() == 0 {
		// smtp-sink insists on dropping privileges when started as root; root keeps the dump dir writable.
		base = append(base, "-u", "root")
	}
	base = append(base, rejectArgs(t, opt.Reject)...)
	if len(opt.Disconnect) > 0 {
		base = append(base, "-q", strings.Join(opt.Disconnect, ","))
	}
	if len(opt.Close421) > 0 {
		base = append(base, "-Q", strings.Join(opt.Close421, ","))
	}
	dir := t.TempDir()
	// Resolved, so that it matches the targets of smtp-sink's open file descriptors (openFiles).
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	if !opt.NoDump {
		// The template goes through strftime: double any % of the path.
		base = append(base, "-d", strings.ReplaceAll(filepath.Join(dir, "msg."), "%", "%%"))
	}
	base = append(base, opt.Args...)

	var lastLog string
	for attempt := 0; attempt < bindAttempts; attempt++ {
		p := port
		if pick {
			p = FreePort(t, host)
		}
		s := &Sink{addr: net.JoinHostPort(host, strconv.Itoa(p)), dir: dir, greeter421: slices.ContainsFunc(opt.Close421,
			func(c string) bool { return strings.EqualFold(c, "connect") })}
		stdout := &testkit.Buffer{OnLine: s.counterLine}
		args := append(append([]string{}, base...), s.addr, "100")
		proc, err := startProcess(t, stdout, s.logLine, bin, args...)
		if err != nil {
			t.Fatalf("relaytest: start smtp-sink: %v", err)
		}
		s.proc = proc
		err = s.probe(10 * time.Second)
		if err == nil {
			return s
		}
		proc.kill()
		lastLog = proc.out.String() + stdout.String()
		if !pick || !isBindError(lastLog) {
			t.Fatalf("relaytest: smtp-sink on %s: %v\n%s", s.addr, err, lastLog)
		}
	}
	t.Fatalf("relaytest: smtp-sink could not bind a port on %s:\n%s", host, lastLog)
	return nil
}

func rejectArgs(t testing.TB, reject map[string]string) []string {
	t.Helper()
	var hard, soft []string
	var hardText, softText string
	for cmd, reply := range reject {
		switch {
		case strings.HasPrefix(reply, "5"):
			if hardText != "" && hardText != reply {
				t.Fatalf("relaytest: smtp-sink has one 5xx reply text, got %q and %q", hardText, reply)
			}
			hard, hardText = append(hard, cmd), reply
		case strings.HasPrefix(reply, "4"):
			if softText != "" && softText != reply {
				t.Fatalf("relaytest: smtp-sink has one 4xx reply text, got %q and %q", softText, reply)
			}
			soft, softText = append(soft, cmd), reply
		default:
			t.Fatalf("relaytest: reject reply %q for %s must start with 4 or 5", reply, cmd)
		}
	}
	var args []string
	if len(hard) > 0 {
		sort.Strings(hard)
		args = append(args, "-f", strings.Join(hard, ","), "-B", hardText)
	}
	if len(soft) > 0 {
		sort.Strings(soft)
		args = append(args, "-r", strings.Join(soft, ","), "-b", softText)
	}
	return args
}

// logLine follows smtp-sink's verbose log (stderr): one "connect" line per accepted connection.
func (s *Sink) logLine(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Lines start with the program path as started ("/usr/sbin/smtp-sink: ").
	_, msg, _ := strings.Cut(line, "smtp-sink: ")
	switch {
	case strings.HasPrefix(msg, "connect ("):
		s.connect++
	case msg == "HELO "+probeHelo:
		s.probes++
	}
}

// counterLine follows smtp-sink -c's counters (stdout): "sess=1 quit=1 mesg=2".
func (s *Sink) counterLine(line string) {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "mesg="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				s.mu.Lock()
				s.mesg = n
				s.mu.Unlock()
			}
		}
	}
}

// probe holds one session to prove the sink is ours and serving, then waits until the sink logged it, so that
// Sessions can leave it out.
func (s *Sink) probe(timeout time.Duration) error {
	if err := waitTCP(s.addr, timeout, s.proc.done); err != nil {
		return err
	}
	// waitTCP's own connection was a session too; the probe below is counted the same way.
	c, err := net.DialTimeout("tcp", s.addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	if s.greeter421 {
		// A sink that greets with 421 and hangs up (Close421: CONNECT): the greeting is all there is to see.
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "421") {
			return fmt.Errorf("probe greeting: %q %v", line, err)
		}
		return s.waitLogged(timeout, func() bool { return s.connect >= 2 })
	}
	for _, cmd := range []string{"", "HELO " + probeHelo, "QUIT"} {
		if cmd != "" {
			if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
				return err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("probe %q: %v", cmd, err)
		}
		if line[0] != '2' {
			return fmt.Errorf("probe %q: %s", cmd, strings.TrimSpace(line))
		}
	}
	return s.waitLogged(timeout, func() bool { return s.probes > 0 && s.connect >= 2 })
}

// waitLogged waits until the sink's log shows the probe session (seen is called with the lock held).
func (s *Sink) waitLogged(timeout time.Duration, seen func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ok := seen()
		s.mu.Unlock()
		if ok {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("smtp-sink did not log the probe session")
}

// Addr is the sink's "host:port".
func (s *Sink) Addr() string { return s.addr }

// Host is the sink's address without the port.
func (s *Sink) Host() string { h, _, _ := net.SplitHostPort(s.addr); return h }

// Port is the sink's port.
func (s *Sink) Port() int { _, p, _ := net.SplitHostPort(s.addr); n, _ := strconv.Atoi(p); return n }

// Sessions is the number of TCP connections the sink accepted since StartSink returned (its own readiness
// probes are not counted; a WaitTCP by the test is). It counts a connection when it opens, so it proves
// connection reuse: N messages over one session leave it at 1.
func (s *Sink) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connect - 2
}

// MessageCount is the number of transactions the sink completed (final "." received), dumped or not.
func (s *Sink) MessageCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mesg
}

// Log is smtp-sink's verbose output (connections and commands), for failure messages.
func (s *Sink) Log() string { return s.proc.out.String() }

// Messages returns the messages captured so far, oldest first.
func (s *Sink) Messages() []SinkMessage {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	// Listed after the directory: a file that was being written when the directory was read and is closed
	// now is complete.
	open := s.openFiles()
	type dumped struct {
		msg SinkMessage
		mod time.Time
	}
	var all []dumped
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "msg.") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		if open[path] {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(raw, []byte("\n\n")) {
			continue
		}
		m, ok := parseDump(raw)
		if !ok {
			continue
		}
		m.File = path
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, dumped{m, info.ModTime()})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].mod.Before(all[j].mod) })
	out := make([]SinkMessage, len(all))
	for i, d := range all {
		out[i] = d.msg
	}
	return out
}

// openFiles lists the files smtp-sink has open. It opens a dump file at MAIL FROM and closes it after the
// final "." (or deletes it at RSET), writing through a buffer meanwhile: a large message shows up in parts, and
// a part can end like a whole message, so only a closed file is a complete transaction.
func (s *Sink) openFiles() map[string]bool {
	open := map[string]bool{}
	if s.proc.exited() {
		return open
	}
	fdDir := "/proc/" + strconv.Itoa(s.proc.cmd.Process.Pid) + "/fd"
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return open
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil {
			open[target] = true
		}
	}
	return open
}

// WaitMessages waits until at least n messages were captured and returns them; it fails the test after
// timeout with the sink's log.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s.MessageCount() >= n {
			if msgs := s.Messages(); len(msgs) >= n {
				return msgs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: sink %s has %d of %d messages after %v\nsink log:\n%s",
				s.addr, len(s.Messages()), n, timeout, tail(s.Log(), 4000))
		}
		if s.proc.exited() {
			t.Fatalf("relaytest: sink %s exited\n%s", s.addr, tail(s.Log(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseDump reads smtp-sink's dump format: X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args and
// X-Rcpt-Args records, then a three-line Received header, then the message, then one empty line.
func parseDump(raw []byte) (SinkMessage, bool) {
	var m SinkMessage
	rest := raw
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return m, false
		}
		line := string(rest[:i])
		rest = rest[i+1:]
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "X-Client-Addr":
			m.ClientAddr = strings.TrimPrefix(v, "ipv6:")
		case "X-Helo-Args":
			m.Helo = v
		case "X-Mail-Args":
			m.MailArgs = v
			m.From = bracketed(v)
		case "X-Rcpt-Args":
			m.RcptArgs = append(m.RcptArgs, v)
			m.To = append(m.To, bracketed(v))
		case "Received":
			// Two continuation lines (by ...; and the date) end the records.
			for range 2 {
				i := bytes.IndexByte(rest, '\n')
				if i < 0 {
					return m, false
				}
				rest = rest[i+1:]
			}
			m.Data = rest[:len(rest)-1] // the empty line smtp-sink appends
			return m, true
		}
	}
}

// bracketed returns the address inside the first <...> of an SMTP argument, or its first word.
func bracketed(arg string) string {
	if i := strings.IndexByte(arg, '<'); i >= 0 {
		if j := strings.IndexByte(arg[i:], '>'); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	f := strings.Fields(arg)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Stop kills the sink (a destination going down); its captured messages stay readable. Later connections to
// Addr are refused. A new StartSink with the same Addr brings a destination back.
func (s *Sink) Stop() { s.proc.kill() }
