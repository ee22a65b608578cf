package inbound

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
)

// smugglingVariants are the bare CR / bare LF sequences around a dot that some receivers take for an end of
// data (SMTP smuggling, CVE-2023-51764 and relatives).
var smugglingVariants = []struct{ name, seq string }{
	{"LF.LF", "\n.\n"},
	{"LF.CRLF", "\n.\r\n"},
	{"CRLF.LF", "\r\n.\n"},
	{"CR.CRLF", "\r.\r\n"},
	{"CRLF.CR", "\r\n.\r"},
	{"CR.CR", "\r.\r"},
	{"LF.CR", "\n.\r"},
}

// smuggled is a message body with a smuggling sequence followed by a second transaction.
func smuggled(seq string) string {
	return "Subject: first\r\n\r\nhello" + seq + "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n"
}

// onlyCRLF reports whether every CR in b is followed by LF and every LF preceded by CR.
func onlyCRLF(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 >= len(b) || b[i+1] != '\n') || c == '\n' && (i == 0 || b[i-1] != '\r') {
			return false
		}
	}
	return true
}

func TestInbound_BareNewlinesRejected(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	for _, v := range smugglingVariants {
		for _, verb := range []string{"DATA", "BDAT"} {
			t.Run(verb+"/"+v.name, func(t *testing.T) {
				d := dial(t, ts.addr)
				d.ehlo("x")
				d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
				d.expect(250)
				d.expect(250)
				body := smuggled(v.seq)
				if verb == "DATA" {
					d.send("DATA")
					d.expect(354)
					d.raw(body + ".\r\n")
				} else {
					d.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
				}
				text := d.expect(550)
				if !strings.HasPrefix(text, "550 5.6.0 ") || !strings.Contains(text, "(session ") {
					t.Errorf("reply %q", text)
				}
				// In step: the next reply answers the next command, nothing of the body ran as a command.
				d.send("NOOP")
				if text := d.expect(250); !strings.Contains(text, "nothing") {
					t.Errorf("NOOP answered %q", text)
				}
			})
		}
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages after bare CR/LF", len(ms))
	}
	if n := ts.hooks.refusedCount(RefusedBareNewline); n != 2*len(smugglingVariants) {
		t.Errorf("OnRefused(bare_newline) %d times", n)
	}
}

func TestInbound_BareNewlinesNormalized(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.BareNewlines = "normalize"
	ts := startServer(t, cfg, serverOpt{})
	n := 0
	for _, v := range smugglingVariants {
		for _, verb := range []string{"DATA", "BDAT"} {
			t.Run(verb+"/"+v.name, func(t *testing.T) {
				d := dial(t, ts.addr)
				d.ehlo("scanner.contoso.local")
				d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
				d.expect(250)
				d.expect(250)
				body := smuggled(v.seq)
				if verb == "DATA" {
					d.send("DATA")
					d.expect(354)
					d.raw(body + ".\r\n")
				} else {
					d.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
				}
				id := queuedID(t, d.expect(250))
				n++
				d.send("NOOP")
				d.expect(250)
				ms := ts.messages()
				if len(ms) != n || ms[n-1].ID != id {
					t.Fatalf("queue holds %d messages, want %d", len(ms), n)
				}
				b := ms[n-1].body
				if !onlyCRLF(b) {
					t.Errorf("stored body still has a bare CR or LF: %q", b)
				}
				if !bytes.Contains(b, []byte("boo\r\n")) || len(ms[n-1].Recipients) != 1 {
					t.Errorf("the smuggled part must stay inside the one message: %q", b)
				}
			})
		}
	}
}

func TestInbound_OverSize(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.MaxMessageSize = 10000
	ts := startServer(t, cfg, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com> SIZE=10001")
	if text := d.expect(552); !strings.Contains(text, "5.3.4") {
		t.Errorf("SIZE over the limit: %q", text)
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789\r\n", 300)
	// DATA without SIZE.
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw(big + ".\r\n")
	if text := d.expect(552); !strings.HasPrefix(text, "552 5.3.4") {
		t.Errorf("DATA over the limit: %q", text)
	}
	// DATA with a SIZE that lies.
	d.send("MAIL FROM:<a@contoso.com> SIZE=100", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw(big + ".\r\n")
	d.expect(552)
	// BDAT in one chunk, then in several chunks that only together exceed the limit.
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
	d.expect(250)
	d.expect(250)
	d.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	if text := d.expect(552); !strings.HasPrefix(text, "552 5.3.4") {
		t.Errorf("BDAT over the limit: %q", text)
	}
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
	d.expect(250)
	d.expect(250)
	half := big[:len(big)/2]
	d.raw(fmt.Sprintf("BDAT %d\r\n%s", len(half), half))
	d.expect(250)
	d.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(half), half))
	d.expect(552)
	// The session is still in step and a message under the limit goes through.
	code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: small\r\n\r\nok\r\n")
	if code != 250 {
		t.Fatalf("small message after refusals: %q", text)
	}
	if ms := ts.messages(); len(ms) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(ms))
	}
}

func TestInbound_TooManyRecipients(t *testing.T) {
	ts := startServer(t, nil, serverOpt{}) // max_recipients = 10
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com>")
	d.expect(250)
	for i := 0; i < 10; i++ {
		d.send(fmt.Sprintf("RCPT TO:<r%d@example.org>", i))
		d.expect(250)
	}
	d.send("RCPT TO:<r10@example.org>")
	if text := d.expect(452); !strings.HasPrefix(text, "452 4.5.3 ") {
		t.Errorf("11th recipient: %q", text)
	}
	d.send("DATA")
	d.expect(354)
	d.raw("Subject: x\r\n\r\nx\r\n.\r\n")
	d.expect(250)
	ms := ts.messages()
	if len(ms) != 1 || len(ms[0].Recipients) != 10 {
		t.Fatalf("queue: %d messages", len(ms))
	}
}

// bdatBody is CRLF text of about size bytes with lines that start with dots, an empty line, a lone dot.
func bdatBody(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <%d@test>\r\nDate: Fri, 27 Nov 2026 03:00:00 +0000\r\nSubject: chunks\r\n\r\n", rng.Int())
	specials := []string{".", "..", ".\r\n.", "", ". leading dot", "..double", "\xc3\xa9t\xc3\xa9 8bit"}
	var pool [4096]byte
	for i := range pool {
		pool[i] = byte(' ' + rng.IntN(95))
	}
	for b.Len() < size {
		if rng.IntN(5) == 0 {
			b.WriteString(specials[rng.IntN(len(specials))])
		} else {
			i := rng.IntN(len(pool) - 1000)
			b.Write(pool[i : i+rng.IntN(998)])
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// chunks cuts body at random points, always including one cut between a CR and its LF when there is one.
func chunks(rng *rand.Rand, body []byte) [][]byte {
	var cuts []int
	if i := bytes.Index(body, []byte("\r\n")); i >= 0 {
		cuts = append(cuts, i+1)
	}
	for n := rng.IntN(8); n > 0; n-- {
		cuts = append(cuts, rng.IntN(len(body)+1))
	}
	cuts = append(cuts, len(body))
	var out [][]byte
	prev := 0
	for _, c := range sortedUnique(cuts) {
		if c >= prev {
			out = append(out, body[prev:c])
			prev = c
		}
	}
	return out
}

func sortedUnique(xs []int) []int {
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] < xs[i] {
				xs[i], xs[j] = xs[j], xs[i]
			}
		}
	}
	return xs
}

// Pipelined MAIL/RCPT/BDAT with random chunk boundaries (CR and LF split across chunks, lines starting with
// '.'), stored byte for byte.
func TestInbound_BDATExact(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.MaxMessageSize = 6 * 1000 * 1000
	ts := startServer(t, cfg, serverOpt{})
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 100, 1000, 4096, 70 * 1024, 300 * 1024, 5 * 1000 * 1000}
	d := dial(t, ts.addr)
	d.ehlo("ex2016.contoso.local")
	for _, size := range sizes {
		body := bdatBody(rng, size)
		parts := chunks(rng, body)
		var w bytes.Buffer
		w.WriteString("MAIL FROM:<a@contoso.com> BODY=8BITMIME SIZE=" + fmt.Sprint(len(body)) + "\r\nRCPT TO:<b@example.org>\r\n")
		for i, p := range parts {
			last := ""
			if i == len(parts)-1 {
				last = " LAST"
			}
			fmt.Fprintf(&w, "BDAT %d%s\r\n", len(p), last)
			w.Write(p)
		}
		d.raw(w.String())
		d.expect(250)
		d.expect(250)
		for range parts[:len(parts)-1] {
			d.expect(250)
		}
		id := queuedID(t, d.expect(250))
		m, err := ts.q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Envelope.BodyType != "8BITMIME" {
			t.Errorf("BODY=8BITMIME not kept: %q", m.Envelope.BodyType)
		}
	}
	ms := ts.messages()
	if len(ms) != len(sizes) {
		t.Fatalf("queue holds %d messages, want %d", len(ms), len(sizes))
	}
	rng = rand.New(rand.NewPCG(1, 2))
	for i, size := range sizes {
		want := bdatBody(rng, size)
		chunks(rng, want) // keep the generator in step with the sending loop
		if got := ms[i].bodyAfterReceived(t); !bytes.Equal(got, want) {
			t.Errorf("size %d: stored body differs (%d bytes stored, %d sent)", size, len(got), len(want))
		}
	}
}

// The same bodies over DATA, dot-stuffed on the wire, are stored unstuffed and byte-exact.
func TestInbound_DATAExact(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	rng := rand.New(rand.NewPCG(3, 4))
	d := dial(t, ts.addr)
	d.ehlo("x")
	for _, size := range []int{0, 500, 200 * 1024} {
		body := bdatBody(rng, size)
		stuffed := bytes.ReplaceAll(append([]byte("\r\n"), body...), []byte("\r\n."), []byte("\r\n.."))[2:]
		code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, string(stuffed))
		if code != 250 {
			t.Fatalf("size %d: %q", size, text)
		}
		id := queuedID(t, text)
		found := false
		for _, m := range ts.messages() {
			if m.ID == id {
				found = true
				if !bytes.Equal(m.bodyAfterReceived(t), body) {
					t.Errorf("size %d: stored body differs", size)
				}
			}
		}
		if !found {
			t.Errorf("size %d: message %s was acknowledged but is not in the queue", size, id)
		}
	}
}

func TestInbound_BDATZeroLast(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "BDAT 0 LAST")
	d.expect(250)
	d.expect(250)
	d.expect(250)
	body := "Subject: z\r\n\r\nzero\r\n"
	d.raw(fmt.Sprintf("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d\r\n%sBDAT 0 LAST\r\n", len(body), body))
	d.expect(250)
	d.expect(250)
	d.expect(250)
	id := queuedID(t, d.expect(250))
	ms := ts.messages()
	if len(ms) != 2 || ms[1].ID != id || !bytes.HasSuffix(ms[1].body, []byte("\r\n\r\nzero\r\n")) {
		t.Fatalf("queue: %d messages; last body %q", len(ms), ms[len(ms)-1].body)
	}
}

// go-smtp #315: the chunk of a BDAT whose envelope was refused must be consumed, not run as commands.
func TestInbound_BDATAfterRefusedEnvelope(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dialFrom(t, ts.addr, "127.0.0.5") // not allowed to relay
	d.ehlo("x")
	chunk := "MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@example.org>\r\n"
	d.raw(fmt.Sprintf("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n", len(chunk), chunk, len(chunk), chunk))
	d.expect(250)
	d.expect(554)
	for i := 0; i < 2; i++ {
		if code, text := d.reply(); code < 500 {
			t.Fatalf("BDAT after a refused envelope: %q", text)
		}
	}
	if text := d.expect(250); !strings.Contains(text, "nothing") {
		t.Fatalf("chunk content ran as commands: %q", text)
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

// A bare LF in the first of several chunks: the chunks are consumed, one refusal at the end, nothing queued.
func TestInbound_BDATBareLFInFirstChunk(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("x")
	c1, c2 := "Subject: x\r\n\nbare\r\n", "more\r\n"
	d.raw(fmt.Sprintf("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n", len(c1), c1, len(c2), c2))
	d.expect(250)
	d.expect(250)
	codes := []int{}
	for {
		code, text := d.reply()
		if strings.Contains(text, "nothing") {
			break
		}
		codes = append(codes, code)
		if len(codes) > 2 {
			t.Fatalf("too many replies: %v", codes)
		}
	}
	if codes[len(codes)-1] != 550 {
		t.Fatalf("replies to the chunks: %v, want the last to be 550", codes)
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

func TestInbound_RSETDuringBDAT(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.raw("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 5\r\nhelloRSET\r\n")
	d.expect(250)
	d.expect(250)
	d.expect(250)
	d.expect(250)
	code, text := d.sendMessage("a@contoso.com", []string{"c@example.org"}, "Subject: after\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("after RSET: %q", text)
	}
	ms := ts.messages()
	if len(ms) != 1 || ms[0].Recipients[0].Addr != "c@example.org" {
		t.Fatalf("queue: %+v", ms)
	}
}

// A client that goes quiet in the middle of DATA is dropped and nothing is queued; one that trickles its body
// slower than the idle timeout in total, but never idle that long, gets through (go-smtp's ReadTimeout alone
// would cap the whole transfer).
func TestInbound_IdleMidData(t *testing.T) {
	ts := startServer(t, nil, serverOpt{idle: time.Second})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw("Subject: slow\r\n\r\npart one\r\n")
	// Then silence: the server must say 421 and hang up.
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(d.r)
	if err != nil {
		t.Fatalf("connection not closed after the idle timeout: %v (read %q)", err, rest)
	}
	if !strings.HasPrefix(string(rest), "421 4.4.2 ") {
		t.Fatalf("idle mid-DATA: %q", rest)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(rest)), "\r\n") {
		if !strings.HasPrefix(line, "421 ") {
			t.Errorf("after the idle timeout the server said %q", line)
		}
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages after an idle client", len(ms))
	}

	d = dial(t, ts.addr)
	d.ehlo("x")
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw("Subject: trickle\r\n\r\n")
	for i := 0; i < 15; i++ { // 15 x 100 ms: longer than the idle timeout in total
		d.raw(fmt.Sprintf("line %d\r\n", i))
		time.Sleep(100 * time.Millisecond)
	}
	d.raw(".\r\n")
	if text := d.expect(250); !strings.Contains(text, "queued as") {
		t.Fatalf("trickled message: %q", text)
	}
}

// failingStore fails at the step named: the queue cannot be made to fail on demand.
type failingStore struct{ atNew bool }

type failingWriter struct{ bytes.Buffer }

func (failingStore) String() string { return "failing" }

func (f failingStore) newWriter() (bodyWriter, error) {
	if f.atNew {
		return nil, fmt.Errorf("spool dir: %w", queue.ErrStorage)
	}
	return &failingWriter{}, nil
}

func (w *failingWriter) Commit(queue.Envelope, []queue.Recipient) (string, error) {
	return "", fmt.Errorf("fsync: %w", errors.Join(queue.ErrStorage, errors.New("input/output error")))
}

func (w *failingWriter) Abort() error { return nil }

func TestInbound_StorageFailure451(t *testing.T) {
	for _, atNew := range []bool{true, false} {
		ts := startServer(t, nil, serverOpt{store: failingStore{atNew: atNew}})
		d := dial(t, ts.addr)
		d.ehlo("x")
		code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: x\r\n\r\nx\r\n")
		if code != 451 || !strings.HasPrefix(text, "451 4.3.0 ") || strings.Contains(text, "fsync") || strings.Contains(text, "spool") {
			t.Errorf("storage failure (at new writer: %v): %q", atNew, text)
		}
		body := "Subject: x\r\n\r\nx\r\n"
		d.raw(fmt.Sprintf("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d LAST\r\n%s", len(body), body))
		d.expect(250)
		d.expect(250)
		d.expect(451)
	}
}

// A client whose connection ends inside the last BDAT chunk gets nothing queued: go-smtp's chunk reader takes
// the early EOF for the end of the chunk.
func TestInbound_BDATTruncatedByEOF(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	for _, last := range []string{" LAST", ""} {
		d := dial(t, ts.addr)
		d.ehlo("x")
		d.raw("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 100" + last + "\r\nSubject: cut\r\n\r\nonly part")
		_ = d.c.(*net.TCPConn).CloseWrite()
		_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if out, err := io.ReadAll(d.r); err != nil {
			t.Fatalf("server did not hang up: %v (%q)", err, out)
		} else if strings.Contains(string(out), "queued as") {
			t.Fatalf("a truncated chunk was queued: %q", out)
		}
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages after truncated BDAT", len(ms))
	}
}

// The bare CR/LF check runs on the reassembled message: a CR ending one chunk pairs with an LF starting the
// next, and a CR ending one chunk followed by anything else is bare.
func TestInbound_BDATChunkBoundaries(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	cases := []struct {
		chunks []string
		want   int
	}{
		{[]string{"Subject: a\r", "\n\r\nbody\r", "\n"}, 250},
		{[]string{"Subject: a\r\n\r\nbody\r", ".\r\n"}, 550},
		{[]string{"Subject: a\r\n\r\nbody\r", "", "\n.\r\n"}, 250},
		{[]string{"Subject: a\r\n\r\nbody\r"}, 550},
		{[]string{"Subject: a\r\n\r\nbody", "\n"}, 550},
	}
	queued := 0
	for i, c := range cases {
		d := dial(t, ts.addr)
		d.ehlo("x")
		var w strings.Builder
		w.WriteString("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\n")
		for j, ch := range c.chunks {
			last := ""
			if j == len(c.chunks)-1 {
				last = " LAST"
			}
			fmt.Fprintf(&w, "BDAT %d%s\r\n%s", len(ch), last, ch)
		}
		d.raw(w.String())
		d.expect(250)
		d.expect(250)
		for range c.chunks[:len(c.chunks)-1] {
			d.expect(250)
		}
		if code, text := d.reply(); code != c.want {
			t.Errorf("case %d %q: %q, want %d", i, c.chunks, text, c.want)
		}
		if c.want == 250 {
			queued++
		}
	}
	ms := ts.messages()
	if len(ms) != queued {
		t.Fatalf("queue holds %d messages, want %d", len(ms), queued)
	}
	for _, m := range ms {
		if !onlyCRLF(m.body) {
			t.Errorf("stored %q", m.body)
		}
	}
}

// Long lines: applications that write HTML on one line are relayed (go-smtp alone stops at 2000 bytes); a
// line beyond maxLineLength is refused permanently, nothing is queued, and the session goes on.
func TestInbound_LongLines(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	long := "Subject: html\r\n\r\n<html>" + strings.Repeat("<p>x</p>", 2500) + "</html>\r\n"
	d := dial(t, ts.addr)
	d.ehlo("app.contoso.local")
	code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, long)
	if code != 250 {
		t.Fatalf("20 KB line: %q", text)
	}
	ms := ts.messages()
	if len(ms) != 1 || !bytes.HasSuffix(ms[0].body, []byte(long[len("Subject: html\r\n"):])) {
		t.Fatalf("long line not stored intact")
	}
	tooLong := "Subject: x\r\n\r\n" + strings.Repeat("y", maxLineLength+10) + "\r\n"
	d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>", "DATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.raw(tooLong + ".\r\n")
	if text := d.expect(554); !strings.HasPrefix(text, "554 5.6.0 ") {
		t.Fatalf("line over the limit: %q", text)
	}
	if ms := ts.messages(); len(ms) != 1 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
	// The same line in BDAT, then a message that is fine: the session stayed in step.
	d.raw(fmt.Sprintf("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d LAST\r\n%s", len(tooLong), tooLong))
	d.expect(250)
	d.expect(250)
	if text := d.expect(554); !strings.HasPrefix(text, "554 5.6.0 ") {
		t.Fatalf("line over the limit in BDAT: %q", text)
	}
	if code, text := d.sendMessage("a@contoso.com", []string{"b@example.org"}, "Subject: after\r\n\r\nok\r\n"); code != 250 {
		t.Fatalf("message after the refused ones: %q", text)
	}
}

// A client that goes quiet inside a BDAT chunk gets a temporary 421 (go-smtp alone would send a permanent 554
// carrying "i/o timeout"), is dropped, and nothing is queued.
func TestInbound_IdleMidBDAT(t *testing.T) {
	ts := startServer(t, nil, serverOpt{idle: 500 * time.Millisecond})
	d := dial(t, ts.addr)
	d.ehlo("x")
	d.raw("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 100 LAST\r\nSubject: slow\r\n")
	d.expect(250)
	d.expect(250)
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(d.r)
	if err != nil {
		t.Fatalf("connection not closed after the idle timeout: %v (read %q)", err, rest)
	}
	if !strings.HasPrefix(string(rest), "421 4.4.2 ") || strings.Contains(string(rest), "554") || strings.Contains(string(rest), "i/o") {
		t.Fatalf("idle inside a BDAT chunk: %q", rest)
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}
