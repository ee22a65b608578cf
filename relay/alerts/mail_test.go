package alerts

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

type mailReports struct {
	mu  sync.Mutex
	got []outcome
}

func (m *mailReports) add(ok bool, detail string, _ []Notice, final bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, outcome{ok, detail, final})
}

func (m *mailReports) list() []outcome {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]outcome(nil), m.got...)
}

func newSMTPChannel(via string, retries []time.Duration) (*smtpChannel, *mailReports, *sync.WaitGroup) {
	rep := &mailReports{}
	wg := &sync.WaitGroup{}
	return &smtpChannel{via: via, to: []string{"it@contoso.test", "boss@contoso.test"}, hostname: "relay.test", loc: time.UTC,
		now: func() time.Time { return t0 }, retries: retries, report: rep.add, ctx: context.Background(), wg: wg}, rep, wg
}

// Alert mail through mail_via reaches a real smtp-sink from the null sender, with the loop-guard headers.
func TestMailVia_ReachesSink(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	ch, rep, wg := newSMTPChannel(sink.Addr(), nil)
	ch.deliver([]Notice{listingNotice()})
	wg.Wait()
	if got := rep.list(); len(got) != 1 || !got[0].ok || !got[0].final || !strings.HasPrefix(got[0].detail, "250 ") {
		t.Fatalf("reports %+v", got)
	}
	m := sink.WaitMessages(t, 1, 10*time.Second)[0]
	if m.From != "" || !strings.HasPrefix(m.MailArgs, "<>") || strings.Join(m.To, ",") != "it@contoso.test,boss@contoso.test" || m.Helo != "relay.test" {
		t.Errorf("envelope: from %q (%s) to %v helo %q", m.From, m.MailArgs, m.To, m.Helo)
	}
	h := m.Header()
	if h.Get("Subject") != "ptrelay: 203.0.113.7 is listed in zen.spamhaus.org (XBL: exploited or infected host)" ||
		h.Get("X-Ptrelay-Alert") != "1" || h.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("header: %v", h)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(m.Body())), " "), "What to do: Send through the smart host") {
		t.Errorf("body:\n%s", m.Body())
	}
	res := ch.test(context.Background(), TestNotice("relay.test", t0))
	if res.Outcome != "sent" || !strings.Contains(res.Detail, "via "+sink.Addr()+": 250 ") {
		t.Errorf("test result %+v", res)
	}
}

// fakeMX is an in-process SMTP server for faults smtp-sink cannot produce on demand: a refusal that turns into
// an acceptance, STARTTLS.
type fakeMX struct {
	mu       sync.Mutex
	mailErrs []error // answers to successive MAIL commands; nil accepts
	sessions int
	tls      []bool
	data     [][]byte
}

type fakeSession struct {
	f   *fakeMX
	tls bool
}

func (s *fakeSession) Reset()        {}
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Mail(string, *smtp.MailOptions) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.sessions++
	s.f.tls = append(s.f.tls, s.tls)
	if len(s.f.mailErrs) > 0 {
		err := s.f.mailErrs[0]
		s.f.mailErrs = s.f.mailErrs[1:]
		return err
	}
	return nil
}
func (s *fakeSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.f.mu.Lock()
	s.f.data = append(s.f.data, b)
	s.f.mu.Unlock()
	return err
}

func startFakeMX(t *testing.T, tlsCert bool, mailErrs ...error) (*fakeMX, string) {
	f := &fakeMX{mailErrs: mailErrs}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &fakeSession{f: f, tls: isTLS}, nil
	}))
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = true
	if tlsCert {
		certFile, keyFile, _ := relaytest.MakeCert(t, t.TempDir(), "mx.test")
		cfg, err := loadPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLSConfig = cfg
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return f, ln.Addr().String()
}

func TestMailVia_RetriesAfterTemporaryRefusal(t *testing.T) {
	f, addr := startFakeMX(t, false, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	ch, rep, wg := newSMTPChannel(addr, []time.Duration{10 * time.Millisecond, 10 * time.Millisecond})
	ch.deliver([]Notice{listingNotice()})
	wg.Wait()
	got := rep.list()
	if len(got) != 2 || got[0].ok || got[0].final || !strings.Contains(got[0].detail, "451 4.3.0 try later") || !got[1].ok {
		t.Fatalf("reports %+v", got)
	}
	if f.sessions != 2 || len(f.data) != 1 {
		t.Errorf("sessions %d, messages %d", f.sessions, len(f.data))
	}
}

func TestMailVia_PermanentRefusalNotRetried(t *testing.T) {
	f, addr := startFakeMX(t, false, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "anonymous senders refused"})
	ch, rep, wg := newSMTPChannel(addr, []time.Duration{10 * time.Millisecond, 10 * time.Millisecond})
	ch.deliver([]Notice{listingNotice()})
	wg.Wait()
	got := rep.list()
	if len(got) != 1 || got[0].ok || !got[0].final || !strings.Contains(got[0].detail, "550 5.7.1 anonymous senders refused") {
		t.Fatalf("reports %+v", got)
	}
	if f.sessions != 1 {
		t.Errorf("a 5xx was retried: %d sessions", f.sessions)
	}
}

func TestMailVia_UsesSTARTTLSWhenOffered(t *testing.T) {
	f, addr := startFakeMX(t, true)
	ch, _, _ := newSMTPChannel(addr, nil)
	if _, err := ch.send(context.Background(), renderMail([]Notice{listingNotice()}, "relay.test", ch.to, t0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if len(f.tls) != 1 || !f.tls[0] {
		t.Fatalf("sessions with TLS: %v", f.tls)
	}
}

func TestMailVia_NobodyListening(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ch, _, _ := newSMTPChannel(addr, nil)
	res := ch.test(context.Background(), TestNotice("relay.test", t0))
	if res.Outcome != "failed" || !strings.Contains(res.Detail, "connect") {
		t.Fatalf("result %+v", res)
	}
}

// Without mail_via, alert mail becomes an ordinary queued message from the null sender.
func TestQueueChannel_Enqueues(t *testing.T) {
	st := openStore(t, t.TempDir())
	var queued []string
	ch := &queueChannel{store: st, to: []string{"it@contoso.test"}, hostname: "relay.test", loc: time.UTC,
		now: func() time.Time { return t0 }, queued: func(id string, _ []Notice) { queued = append(queued, id) },
		report: func(bool, string, []Notice, bool) { t.Error("queueing failed") }}
	ch.deliver([]Notice{listingNotice()})
	if len(queued) != 1 {
		t.Fatalf("queued %v", queued)
	}
	defer func() {
		if len(queued) != 2 {
			t.Errorf("the test notice's mail was not tracked: %v", queued)
		}
	}()
	m, err := st.Get(queued[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.From != "" || len(m.Recipients) != 1 || m.Recipients[0].Addr != "it@contoso.test" || m.Recipients[0].State != queue.StateQueued {
		t.Errorf("message %+v", m)
	}
	rc, err := st.Body(queued[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(body), "X-Ptrelay-Alert: 1\r\n") {
		t.Errorf("body:\n%s", body)
	}
	res := ch.test(context.Background(), TestNotice("relay.test", t0))
	if res.Outcome != "queued" || !strings.HasPrefix(res.Detail, "queued as ") {
		t.Errorf("test result %+v", res)
	}
}

func loadPair(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}
