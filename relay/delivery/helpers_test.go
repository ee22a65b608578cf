package delivery

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/oauth/oauthtest"
)

// testConfig is a direct-delivery config for loopback peers: short retries, delivery.port = port.
func testConfig(port int) *config.Config {
	c := config.Default()
	c.Hostname = "relay.ptrelay.test"
	c.Delivery.Port = port
	c.Delivery.TLS = "opportunistic"
	c.Delivery.Concurrency = 8
	c.Delivery.PerDestination = 4
	c.Routing.Mode = "direct"
	c.Smarthosts = nil
	c.Queue.RetryMin = config.Duration(200 * time.Millisecond)
	c.Queue.RetryMax = config.Duration(400 * time.Millisecond)
	c.Queue.Lifetime = config.Duration(time.Hour)
	c.Queue.DelayWarning = 0
	return c
}

// smarthostEntry is one [[smarthosts]] entry named "isp" at addr with the documented defaults, tls as given, and
// edit applied.
func smarthostEntry(addr string, tls config.SmarthostTLS, edit func(*config.Smarthost)) config.Smarthost {
	h := config.NewSmarthost("isp", addr)
	h.TLS = tls
	if edit != nil {
		edit(&h)
	}
	return h
}

func openStore(t *testing.T, dir string) *queue.Store {
	t.Helper()
	st, err := queue.Open(queue.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("queue.Open: %v", err)
	}
	// Registered before the scheduler's stop, so it runs after it (cleanups are last in, first out). A store the
	// test closed itself only reports that it is closed already.
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// put queues a message directly through the store API (the inbound side is someone else's).
func put(t *testing.T, st *queue.Store, env queue.Envelope, body string, rcpts ...string) string {
	t.Helper()
	w, err := st.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	var rs []queue.Recipient
	for _, r := range rcpts {
		rs = append(rs, queue.Recipient{Addr: r, State: queue.StateQueued})
	}
	id, err := w.Commit(env, rs)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return id
}

func msgBody(subject string) string {
	return "From: a@sender.test\r\nTo: b@dest.test\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject +
		"@sender.test>\r\n\r\nHello.\r\n.leading dot line\r\n\r\nbye\r\n"
}

func resolver(t *testing.T, addr string) *dnscheck.Resolver {
	t.Helper()
	r, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{addr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// recorder collects OnAttempt results.
type recorder struct {
	mu  sync.Mutex
	all []Result
}

func (r *recorder) add(res Result) {
	r.mu.Lock()
	r.all = append(r.all, res)
	r.mu.Unlock()
}

func (r *recorder) list() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.all...)
}

func (r *recorder) count(o Outcome) int {
	n := 0
	for _, x := range r.list() {
		if x.Outcome == o {
			n++
		}
	}
	return n
}

// run starts a scheduler and stops it (waiting for Run to return) at the end of the test.
// Every attempt is recorded; opts' zero fields get test values (a 5 s I/O timeout, no jitter spread).
func run(t *testing.T, cfg *config.Config, st *queue.Store, res *dnscheck.Resolver, opts Options) (*Scheduler, *recorder, func()) {
	t.Helper()
	return runWith(t, cfg, st, res, opts, nil)
}

// runWith is run with configure applied to the scheduler before it starts.
func runWith(t *testing.T, cfg *config.Config, st *queue.Store, res *dnscheck.Resolver, opts Options, configure func(*Scheduler)) (*Scheduler, *recorder, func()) {
	t.Helper()
	rec := &recorder{}
	if opts.IOTimeout == 0 {
		opts.IOTimeout = 5 * time.Second
	}
	if opts.Jitter == nil {
		opts.Jitter = func(n int64) int64 { return n / 2 }
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := New(NewSettings(cfg), Env{Store: st, Resolver: res, Log: log, Observers: Observers{OnAttempt: rec.add}, Options: opts})
	if configure != nil {
		configure(s)
	}
	stop := testkit.Serve(t, "the scheduler", s.Run)
	return s, rec, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond (a bounded wait, never a timing assertion).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// queueEmpty reports whether every message is gone (all recipients final).
func queueEmpty(t *testing.T, st *queue.Store) bool {
	l, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(l) == 0
}

// ---- in-process fake peer (faults only) ----

type fakeMsg struct {
	From  string
	To    []string
	Data  []byte
	Helo  string
	Sess  int
	UTF8  bool
	Body8 bool
	Size  int64 // MAIL's SIZE=
	TLS   bool
	Rcpt  []string // "addr NOTIFY=... ORCPT=..." as the peer parsed them
	// ClientCert is the common name of the certificate the client presented in the TLS handshake.
	ClientCert string
}

// fakePeer is a go-smtp server with scripted faults, for what smtp-sink cannot do.
type fakePeer struct {
	t    *testing.T
	srv  *smtp.Server
	addr string

	mu       sync.Mutex
	sessions int
	helos    []string
	msgs     []fakeMsg
	authed   []string
	tokens   []string // XOAUTH2 tokens presented, in order
	dataN    int
	rcptN    int

	// scripts; nil means accept
	mailErr     func(sess, n int) error           // n counts MAIL commands within the session
	mailErrFrom func(from string) error           // by the sender
	rcptErr     func(txRcpt int, to string) error // txRcpt counts RCPTs within the transaction
	dataErr     func(n int) error                 // n counts DATA commands, from 1
	dataHook    func(n int, c *smtp.Conn, r io.Reader) error
	authUsers   map[string]string // PLAIN/LOGIN credentials when set; AUTH offered then
	// xoauth2, when set, offers AUTH XOAUTH2 and judges each user and token (oauthtest.XOAUTH2Server).
	xoauth2 func(user, token string) bool
	mechs   []string
	tls     *tls.Config // STARTTLS offered when set
	ext     func(*smtp.Server)
}

func startFake(t *testing.T, addr string, configure func(*fakePeer)) *fakePeer {
	t.Helper()
	f := &fakePeer{t: t}
	if configure != nil {
		configure(f)
	}
	f.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		f.mu.Lock()
		f.sessions++
		n := f.sessions
		f.helos = append(f.helos, c.Hostname())
		f.mu.Unlock()
		return &fakeSession{f: f, c: c, sess: n}, nil
	}))
	f.srv.Domain = "fake.test"
	f.srv.TLSConfig = f.tls
	if f.ext != nil {
		f.ext(f.srv)
	}
	f.srv.AllowInsecureAuth = true
	f.srv.ReadTimeout = 10 * time.Second
	f.srv.WriteTimeout = 10 * time.Second
	f.srv.ErrorLog = log4test{t}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("fake peer listen %s: %v", addr, err)
	}
	f.addr = l.Addr().String()
	go func() { _ = f.srv.Serve(l) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

type log4test struct{ t *testing.T }

func (l log4test) Printf(format string, v ...any) { l.t.Logf("fake peer: "+format, v...) }
func (l log4test) Println(v ...any)               { l.t.Log(append([]any{"fake peer:"}, v...)...) }

func (f *fakePeer) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

func (f *fakePeer) presentedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

func (f *fakePeer) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func (f *fakePeer) heloNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.helos...)
}

type fakeSession struct {
	f     *fakePeer
	c     *smtp.Conn
	sess  int
	from  string
	to    []string
	opts  *smtp.MailOptions
	nrcpt int
	nmail int
	rcpt  []string
}

func (s *fakeSession) AuthMechanisms() []string {
	switch {
	case s.f.xoauth2 != nil:
		return []string{"XOAUTH2"}
	case s.f.authUsers == nil:
		return nil
	case s.f.mechs != nil:
		return s.f.mechs
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := s.f.authUsers[user]; ok && want == pass {
			s.f.mu.Lock()
			s.f.authed = append(s.f.authed, mech+":"+user)
			s.f.mu.Unlock()
			return nil
		}
		return smtp.ErrAuthFailed
	}
	switch mech {
	case "XOAUTH2":
		if s.f.xoauth2 != nil {
			return oauthtest.XOAUTH2Server(func(user, tok string) bool {
				ok := s.f.xoauth2(user, tok)
				s.f.mu.Lock()
				s.f.tokens = append(s.f.tokens, tok)
				if ok {
					s.f.authed = append(s.f.authed, mech+":"+user)
				}
				s.f.mu.Unlock()
				return ok
			}), nil
		}
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, u, p string) error { return check(u, p) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the LOGIN mechanism's server side (go-sasl dropped it), enough for a fake peer.
type loginServer struct {
	step  int
	user  string
	check func(u, p string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	s.f.mu.Lock()
	s.f.rcptN = 0
	s.f.mu.Unlock()
	s.nmail++
	if s.f.mailErr != nil {
		if err := s.f.mailErr(s.sess, s.nmail); err != nil {
			return err
		}
	}
	s.f.mu.Lock()
	byFrom := s.f.mailErrFrom
	s.f.mu.Unlock()
	if byFrom != nil {
		if err := byFrom(from); err != nil {
			return err
		}
	}
	s.from, s.opts, s.to, s.nrcpt, s.rcpt = from, opts, nil, 0, nil
	return nil
}

func (s *fakeSession) Rcpt(to string, o *smtp.RcptOptions) error {
	s.nrcpt++
	desc := to
	if o != nil {
		for _, n := range o.Notify {
			desc += " NOTIFY=" + string(n)
		}
		if o.OriginalRecipient != "" {
			desc += " ORCPT=" + string(o.OriginalRecipientType) + ";" + o.OriginalRecipient
		}
	}
	if s.f.rcptErr != nil {
		if err := s.f.rcptErr(s.nrcpt, to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	s.rcpt = append(s.rcpt, desc)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	s.f.mu.Lock()
	s.f.dataN++
	n := s.f.dataN
	s.f.mu.Unlock()
	if s.f.dataHook != nil {
		if err := s.f.dataHook(n, s.c, r); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.f.dataErr != nil {
		if err := s.f.dataErr(n); err != nil {
			return err
		}
	}
	m := fakeMsg{From: s.from, To: s.to, Data: b, Helo: s.c.Hostname(), Sess: s.sess, Rcpt: s.rcpt}
	var state tls.ConnectionState
	state, m.TLS = s.c.TLSConnectionState()
	if len(state.PeerCertificates) > 0 {
		m.ClientCert = state.PeerCertificates[0].Subject.CommonName
	}
	if s.opts != nil {
		m.UTF8 = s.opts.UTF8
		m.Body8 = s.opts.Body == smtp.Body8BitMIME
		m.Size = s.opts.Size
	}
	s.f.mu.Lock()
	s.f.msgs = append(s.f.msgs, m)
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Reset()        { s.from, s.to, s.nrcpt, s.rcpt = "", nil, 0, nil }
func (s *fakeSession) Logout() error { return nil }

func replyErr4(code int, ec smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// zone builds dnstest records: domain -> MX hosts with their loopback addresses.
func mxZone(domain string, mx ...string) []string {
	var out []string
	for i, ip := range mx {
		host := fmt.Sprintf("mx%d.%s", i+1, domain)
		out = append(out, fmt.Sprintf("%s. MX %d %s.", domain, 10*(i+1), host), fmt.Sprintf("%s. A %s", host, ip))
	}
	return out
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
