package inbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// testServer is an inbound server on 127.0.0.1:0 backed by a real queue in t.TempDir.
type testServer struct {
	t     *testing.T
	srv   *Server
	q     *queue.Store
	addr  string
	cfg   *config.Config
	hooks *hookRecorder
}

const (
	testUser = "exchange"
	testPass = "s3cret pass"
)

var (
	testHashOnce sync.Once
	testHash     string
)

// testConfig is a small configuration: loopback allowed, one user, 1 MB messages, 10 recipients.
func testConfig(t testing.TB) *config.Config {
	testHashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte(testPass), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		testHash = string(h)
	})
	return &config.Config{
		Hostname: "relay.test",
		DataDir:  t.TempDir(),
		SMTP: config.SMTP{
			AllowedNetworks: []string{"127.0.0.1/32", "::1/128"},
			MaxMessageSize:  1000 * 1000,
			MaxRecipients:   10,
			MaxConnections:  300,
			BareNewlines:    "reject",
			AuthRequiresTLS: true,
			Users:           []config.User{{Name: testUser, PasswordHash: testHash}},
		},
	}
}

type hookRecorder struct {
	mu       sync.Mutex
	sessions int
	accepted []string
	refused  []string
	tls      []string
}

func (h *hookRecorder) hooks() Hooks {
	return Hooks{
		OnSession:  func(d int) { h.mu.Lock(); h.sessions += d; h.mu.Unlock() },
		OnAccepted: func(id string, _ int64) { h.mu.Lock(); h.accepted = append(h.accepted, id); h.mu.Unlock() },
		OnRefused:  func(r string) { h.mu.Lock(); h.refused = append(h.refused, r); h.mu.Unlock() },
		OnTLS: func(ip netip.Addr, v, c string) {
			h.mu.Lock()
			h.tls = append(h.tls, ip.String()+" "+v+" "+c)
			h.mu.Unlock()
		},
	}
}

func (h *hookRecorder) refusedCount(reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.refused {
		if r == reason {
			n++
		}
	}
	return n
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PTRELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type serverOpt struct {
	listener func(net.Listener) net.Listener // wraps the test listener (e.g. to fake a non-loopback client)
	store    store                           // replaces the real queue (fault injection only)
	idle     time.Duration
	log      *slog.Logger
	listen   string // default 127.0.0.1:0
}

// startServer starts a server with cfg (testConfig when nil) and stops it when the test ends.
func startServer(t *testing.T, cfg *config.Config, opt serverOpt) *testServer {
	t.Helper()
	if cfg == nil {
		cfg = testConfig(t)
	}
	ts := &testServer{t: t, cfg: cfg, hooks: &hookRecorder{}}
	q, err := queue.Open(queue.Options{Dir: filepath.Join(t.TempDir(), "queue"), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("queue.Open: %v", err)
	}
	ts.q = q
	log := opt.log
	if log == nil {
		log = testLogger(t)
	}
	if opt.store != nil {
		ts.srv, err = newServer(cfg, opt.store, log, ts.hooks.hooks())
	} else {
		ts.srv, err = New(cfg, q, log, ts.hooks.hooks())
	}
	if err != nil {
		t.Fatalf("inbound.New: %v", err)
	}
	if opt.idle > 0 {
		ts.srv.idle = opt.idle
	} else {
		ts.srv.idle = 20 * time.Second
	}
	if opt.listen == "" {
		opt.listen = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", opt.listen)
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	if opt.listener != nil {
		l = opt.listener(l)
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ts.srv != nil { // nil: the test shut it down itself
			if err := ts.srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
		if err := q.Close(); err != nil {
			t.Errorf("queue close: %v", err)
		}
	})
	return ts
}

// messages returns what the queue holds, oldest first, with bodies.
func (ts *testServer) messages() []storedMessage {
	ts.t.Helper()
	ms, err := ts.q.List()
	if err != nil {
		ts.t.Fatalf("queue list: %v", err)
	}
	var out []storedMessage
	for _, m := range ms {
		rc, err := ts.q.Body(m.ID)
		if err != nil {
			ts.t.Fatalf("queue body %s: %v", m.ID, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			ts.t.Fatal(err)
		}
		out = append(out, storedMessage{Message: m, body: b})
	}
	return out
}

type storedMessage struct {
	*queue.Message
	body []byte
}

// bodyAfterTrace strips the Received field we prepend (and the Date/Message-ID we may append are left alone).
func (m storedMessage) bodyAfterReceived(t *testing.T) []byte {
	t.Helper()
	b := m.body
	if !strings.HasPrefix(string(b), "Received: ") {
		t.Fatalf("stored body does not start with Received: %q", clip(b))
	}
	i := 0
	for {
		j := strings.Index(string(b[i:]), "\r\n")
		if j < 0 {
			t.Fatalf("unterminated Received field")
		}
		i += j + 2
		if i >= len(b) || (b[i] != ' ' && b[i] != '\t') {
			return b[i:]
		}
	}
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// dialog is a raw SMTP client for what go-smtp's client cannot say.
type dialog struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *dialog {
	t.Helper()
	return dialFrom(t, addr, "")
}

// dialFrom connects from a given loopback source address ("" = any).
func dialFrom(t *testing.T, addr, src string) *dialog {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	dl := &dialog{t: t, c: c, r: bufio.NewReader(c)}
	dl.expect(220)
	return dl
}

func (d *dialog) send(lines ...string) {
	d.t.Helper()
	d.raw(strings.Join(lines, "\r\n") + "\r\n")
}

func (d *dialog) raw(s string) {
	d.t.Helper()
	_ = d.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(d.c, s); err != nil {
		d.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns its code and full text.
func (d *dialog) reply() (int, string) {
	d.t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var all []string
	for {
		line, err := d.r.ReadString('\n')
		if err != nil {
			d.t.Fatalf("reading reply (so far %q): %v", all, err)
		}
		line = strings.TrimRight(line, "\r\n")
		all = append(all, line)
		if len(line) < 4 {
			d.t.Fatalf("short reply line %q", line)
		}
		if line[3] == ' ' {
			code, err := strconv.Atoi(line[:3])
			if err != nil {
				d.t.Fatalf("bad reply %q", line)
			}
			return code, strings.Join(all, "\n")
		}
	}
}

// expect reads a reply and fails unless its code is want.
func (d *dialog) expect(want int) string {
	d.t.Helper()
	code, text := d.reply()
	if code != want {
		d.t.Fatalf("want %d, got %q", want, text)
	}
	return text
}

// closed reports whether the server closed the connection (EOF within the deadline).
func (d *dialog) closed() bool {
	d.t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := d.r.ReadByte()
	return err == io.EOF
}

func (d *dialog) ehlo(name string) string {
	d.t.Helper()
	d.send("EHLO " + name)
	return d.expect(250)
}

// startTLS upgrades the dialog; the client trusts pool.
func (d *dialog) startTLS(cfg *tls.Config) {
	d.t.Helper()
	d.send("STARTTLS")
	d.expect(220)
	tc := tls.Client(d.c, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		d.t.Fatalf("TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	d.c = tc
	d.r = bufio.NewReader(tc)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// queuedID extracts the ID from "250 2.0.0 Ok: queued as ID ...".
func queuedID(t *testing.T, reply string) string {
	t.Helper()
	_, rest, ok := strings.Cut(reply, "queued as ")
	if !ok {
		t.Fatalf("no queue ID in %q", reply)
	}
	id, _, _ := strings.Cut(rest, " ")
	if !queue.ValidID(id) {
		t.Fatalf("%q is not a queue ID (reply %q)", id, reply)
	}
	return id
}

// writeTestCert makes a self-signed RSA certificate for "relay.test" in dir and returns the file paths and a
// client config trusting it.
func writeTestCert(t testing.TB, dir string) (certPath, keyPath string, client *tls.Config) {
	t.Helper()
	certPath, keyPath, pool := relaytest.MakeCert(t, dir, "relay.test")
	return certPath, keyPath, &tls.Config{RootCAs: pool, ServerName: "relay.test"}
}

// remoteListener makes every accepted connection report a fixed remote address, so the server sees a client
// that is not on loopback although the test talks over loopback (see TestAuth_NotBeforeSTARTTLSOffLoopback).
type remoteListener struct {
	net.Listener
	remote net.Addr
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c, l.remote}, nil
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

func lanClient(l net.Listener) net.Listener {
	return remoteListener{l, &net.TCPAddr{IP: net.ParseIP("192.168.1.20"), Port: 40000}}
}

// sendMessage runs a whole transaction on an EHLO'd dialog and returns the final reply.
func (d *dialog) sendMessage(from string, rcpts []string, body string) (int, string) {
	d.t.Helper()
	d.send(fmt.Sprintf("MAIL FROM:<%s>", from))
	d.expect(250)
	for _, r := range rcpts {
		d.send(fmt.Sprintf("RCPT TO:<%s>", r))
		d.expect(250)
	}
	d.send("DATA")
	d.expect(354)
	d.raw(body + ".\r\n")
	return d.reply()
}
