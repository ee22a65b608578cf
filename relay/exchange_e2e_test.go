package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/internal/testkit"
)

// captureSink is a next hop that keeps every message's bytes exactly as received (go-smtp, DATA from our
// client: ptrelay never sends BDAT, so it is a DATA-only hop from the relay's side).
type captureSink struct {
	mu   sync.Mutex
	msgs [][]byte
	addr string
}

func startCaptureSink(t *testing.T) *captureSink {
	t.Helper()
	cs := &captureSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &captureSession{cs}, nil }))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return cs
}

func (cs *captureSink) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	var got [][]byte
	testkit.WaitForExplained(t, 60*time.Second, func() string {
		return fmt.Sprintf("the sink got %d messages, want %d", len(got), n)
	}, func() bool {
		cs.mu.Lock()
		got = append([][]byte(nil), cs.msgs...)
		cs.mu.Unlock()
		return len(got) >= n
	})
	return got
}

type captureSession struct{ cs *captureSink }

func (s *captureSession) Reset()                               {}
func (s *captureSession) Logout() error                        { return nil }
func (s *captureSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *captureSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cs.mu.Lock()
	s.cs.msgs = append(s.cs.msgs, b)
	s.cs.mu.Unlock()
	return nil
}

// waitQueueEmpty waits until every message r accepted has left its queue.
func waitQueueEmpty(t *testing.T, r *Relay) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, "an empty queue", func() bool {
		l, err := r.store.List()
		if err != nil {
			t.Fatal(err)
		}
		return len(l) == 0
	})
}

// relayToSink starts a daemon whose smart host is sink (no TLS, no AUTH) with extra [smtp] keys.
func relayToSink(t *testing.T, sink string, smtpExtra string) string {
	t.Helper()
	_, addr := startRelayWithSmarthost(t, smtpExtra, sink)
	return addr
}

// rawClient is a line-level SMTP client, for what go-smtp's client cannot say (BDAT, bare LF).
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	rc.expect("220")
	rc.cmd("EHLO sbs2011.contoso.local", "250")
	return rc
}

// reply reads one whole (possibly multi-line) reply and returns its last line.
func (rc *rawClient) reply() string {
	rc.t.Helper()
	for {
		line, err := rc.br.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("reading a reply: %v", err)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (rc *rawClient) expect(code string) string {
	rc.t.Helper()
	line := rc.reply()
	if !strings.HasPrefix(line, code) {
		rc.t.Fatalf("got %q, want %s", line, code)
	}
	return line
}

func (rc *rawClient) cmd(line, code string) string {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, line+"\r\n"); err != nil {
		rc.t.Fatal(err)
	}
	return rc.expect(code)
}

// exchangeBody builds a message of about size bytes whose header already has Message-ID and Date (so the
// relay only prepends Received) and whose lines often start with '.', as Exchange's BDAT bodies may.
func exchangeBody(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <a@contoso.com>\r\nTo: <b@example.org>\r\nSubject: bdat %d\r\n", size)
	b.WriteString("Message-ID: <x@contoso.com>\r\nDate: Fri, 27 Nov 2026 04:00:00 +0000\r\n\r\n")
	words := []string{".", "..", "word", ".dot", "x", "\t", "é"}
	for b.Len() < size {
		for range rng.IntN(12) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// TestExchange_BDATRelayedByteExact sends messages of 1 byte of body to 5 MB with BDAT in random chunk sizes (so
// CR and LF fall on both sides of chunk boundaries) and checks that the next hop, which ptrelay feeds with DATA,
// gets exactly those bytes after the Received header ptrelay prepends.
func TestExchange_BDATRelayedByteExact(t *testing.T) {
	sink := startCaptureSink(t)
	addr := relayToSink(t, sink.addr, "")
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := []int{1, 150, 4096, 70 << 10, 300 << 10, 5 << 20}
	var sent [][]byte
	for _, size := range sizes {
		rc := dialRaw(t, addr)
		body := exchangeBody(rng, size)
		rc.cmd("MAIL FROM:<a@contoso.com> BODY=8BITMIME SIZE="+fmt.Sprint(len(body)), "250")
		rc.cmd("RCPT TO:<b@example.org>", "250")
		for rest := body; ; {
			n := min(1+rng.IntN(9000), len(rest))
			last := n == len(rest)
			head := fmt.Sprintf("BDAT %d", n)
			if last {
				head += " LAST"
			}
			if _, err := rc.c.Write(append([]byte(head+"\r\n"), rest[:n]...)); err != nil {
				t.Fatal(err)
			}
			line := rc.expect("250")
			rest = rest[n:]
			if last {
				if !strings.Contains(line, "queued as") {
					t.Fatalf("last BDAT answered %q", line)
				}
				break
			}
		}
		rc.cmd("QUIT", "221")
		sent = append(sent, body)
	}
	got := sink.wait(t, len(sizes))
	for _, body := range sent {
		found := false
		for _, m := range got {
			if bytes.HasSuffix(m, body) && bytes.HasPrefix(m, []byte("Received: ")) {
				header := m[:len(m)-len(body)]
				// Only the Received header (folded lines) stands before the client's bytes.
				if bytes.Count(header, []byte("\r\n")) == bytes.Count(header, []byte("\r\n\t"))+bytes.Count(header, []byte("\r\n "))+1 {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("a %d-byte BDAT message did not arrive byte-exact after one Received header", len(body))
		}
	}
}

// TestExchange_NormalizeArrivesAsOneCleanMessage sends every smuggling variant with bare_newlines = "normalize"
// and checks the next hop gets one message per variant, in plain CRLF text that no lenient receiver can split;
// with "reject" each is refused and nothing is relayed.
func TestExchange_NormalizeArrivesAsOneCleanMessage(t *testing.T) {
	variants := []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r", "\n.\r"}
	message := func(i int, v string) string {
		return fmt.Sprintf("Subject: v%d\r\n\r\nbefore%sMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n", i, v)
	}
	t.Run("normalize", func(t *testing.T) {
		sink := startCaptureSink(t)
		r, addr := startRelayWithSmarthost(t, `bare_newlines = "normalize"`, sink.addr)
		for i, v := range variants {
			rc := dialRaw(t, addr)
			rc.cmd("MAIL FROM:<device@contoso.com>", "250")
			rc.cmd("RCPT TO:<b@example.org>", "250")
			rc.cmd("DATA", "354")
			rc.cmd(message(i, v)+".", "250")
			rc.cmd("QUIT", "221")
		}
		sink.wait(t, len(variants))
		// A message split at the next hop would be an extra transaction in the session that delivered it, ended
		// before that session's last reply: once the queue is empty, every session is over.
		waitQueueEmpty(t, r)
		got := sink.wait(t, len(variants))
		if len(got) != len(variants) {
			t.Fatalf("the sink got %d messages for %d variants", len(got), len(variants))
		}
		for _, m := range got {
			if strings.Contains(string(m), "evil@x") && !strings.Contains(string(m), "Subject: v") {
				t.Errorf("smuggled commands arrived as their own message: %q", m)
			}
			stripped := strings.ReplaceAll(string(m), "\r\n", "")
			if strings.ContainsAny(stripped, "\r\n") {
				t.Errorf("a bare CR or LF reached the next hop: %q", m)
			}
		}
	})
	t.Run("reject", func(t *testing.T) {
		sink := startCaptureSink(t)
		r, addr := startRelayWithSmarthost(t, "", sink.addr)
		for i, v := range variants {
			rc := dialRaw(t, addr)
			rc.cmd("MAIL FROM:<device@contoso.com>", "250")
			rc.cmd("RCPT TO:<b@example.org>", "250")
			rc.cmd("DATA", "354")
			// Variant "\r\n.\r" + X reaches ptrelay's data path with the dot and the CR already dropped by
			// go-smtp's DATA reader; ptrelay's input tap catches it, so it is refused like the others.
			line := rc.cmd(message(i, v)+".", "")
			if !strings.HasPrefix(line, "5") {
				t.Errorf("variant %q answered %q, want a 5xx", v, line)
			}
		}
		// A clean message after them: once it has arrived and the queue is empty, anything the variants had
		// queued would have arrived too.
		rc := dialRaw(t, addr)
		rc.cmd("MAIL FROM:<device@contoso.com>", "250")
		rc.cmd("RCPT TO:<b@example.org>", "250")
		rc.cmd("DATA", "354")
		rc.cmd("Subject: clean\r\n\r\nclean\r\n.", "250")
		sink.wait(t, 1)
		waitQueueEmpty(t, r)
		if got := sink.wait(t, 1); len(got) != 1 || !strings.Contains(string(got[0]), "Subject: clean") {
			t.Errorf("the sink got %d messages, want only the clean one", len(got))
		}
	})
}
