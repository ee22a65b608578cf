package message

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The SMTP smuggling variants (CVE-2023-51764 family), what go-smtp v0.25.1's DATA reader hands the backend
// for each, and what the Filter makes of it. go-smtp's reader is the net/textproto one without CRLF -> LF: it
// drops a dot at the start of a line (after CRLF), and in "\r\n.\r" followed by anything but LF it drops the
// dot and the CR too. So for DATA the Filter does not always see what the client sent:
//
//   - "\r\n.\n" arrives as "\r\n\n": still a bare LF, rejected or normalized like the others;
//   - "\r\n.\rB" arrives as "\r\nB": no bare newline is left, so even Reject mode accepts it. Nothing can be
//     smuggled through it (the result is plain CRLF text), but go-smtp silently altered the content; only
//     BDAT, which go-smtp passes raw, shows the Filter the original (and there it is rejected).
//
// Each variant sits between "A" and "B" in a body; dataSeen is that body as the backend receives it over DATA,
// checked against a live go-smtp server so that an upgrade changing the reader fails here.
var smugglingCases = []struct {
	name, variant string
	dataSeen      string // after go-smtp's DATA reader
	normData      string // Normalize(dataSeen)
	normBDAT      string // Normalize(raw), BDAT content is passed raw
}{
	{"LF.LF", "\n.\n", "\n.\n", "\r\n.\r\n", "\r\n.\r\n"},
	{"LF.CRLF", "\n.\r\n", "\n.\r\n", "\r\n.\r\n", "\r\n.\r\n"},
	{"CRLF.LF", "\r\n.\n", "\r\n\n", "\r\n\r\n", "\r\n.\r\n"},
	{"CR.CRLF", "\r.\r\n", "\r.\r\n", "\r\n.\r\n", "\r\n.\r\n"},
	{"CRLF.CR", "\r\n.\r", "\r\n", "\r\n", "\r\n.\r\n"},
	{"CR.CR", "\r.\r", "\r.\r", "\r\n.\r\n", "\r\n.\r\n"},
	{"LF.CR", "\n.\r", "\n.\r", "\r\n.\r\n", "\r\n.\r\n"},
}

const smugglingHead = "Subject: smuggling\r\n\r\nA"
const smugglingTail = "B\r\nMAIL FROM:<evil@example.com>\r\n"

func TestFilter_SmugglingVariants(t *testing.T) {
	srv := startSink(t)
	for _, tc := range smugglingCases {
		t.Run(tc.name, func(t *testing.T) {
			raw := smugglingHead + tc.variant + smugglingTail
			got := srv.sendDATA(t, raw)
			if want := smugglingHead + tc.dataSeen + smugglingTail; got != want {
				t.Fatalf("go-smtp handed the backend %q, want %q (did go-smtp's DATA reader change?)", got, want)
			}
			inputs := []struct{ path, in, norm string }{
				{"DATA", got, smugglingHead + tc.normData + smugglingTail},
				{"BDAT", raw, smugglingHead + tc.normBDAT + smugglingTail},
			}
			for _, in := range inputs {
				for _, ch := range chunkings([]byte(in.in)) {
					out, _, err := runFilter(Reject, ch)
					switch {
					case hasBareNewline(in.in) && !errors.Is(err, ErrBareNewline):
						t.Fatalf("%s Reject %q: err %v, want ErrBareNewline", in.path, ch, err)
					case !hasBareNewline(in.in) && (err != nil || string(out) != in.in):
						t.Fatalf("%s Reject %q: out %q err %v, want the input back", in.path, ch, out, err)
					}
					out, _, err = runFilter(Normalize, ch)
					if err != nil || string(out) != in.norm {
						t.Fatalf("%s Normalize %q: out %q err %v, want %q", in.path, ch, out, err, in.norm)
					}
				}
				// Every chunking gave the same output, so one check each covers them all.
				if !hasBareNewline(in.in) {
					assertUnsplittable(t, []byte(in.in))
				}
				assertUnsplittable(t, []byte(in.norm))
			}
		})
	}
}

func hasBareNewline(s string) bool {
	return strings.Count(s, "\r") != strings.Count(s, "\r\n") || strings.Count(s, "\n") != strings.Count(s, "\r\n")
}

// assertUnsplittable fails the test when splittable(body) finds an early end of data.
func assertUnsplittable(t *testing.T, body []byte) {
	t.Helper()
	if wire, ok := unsplittable(body); !ok {
		t.Fatalf("after dot-stuffing, %q has an end of data before its end", wire)
	}
}

// unsplittable dot-stuffs body the way go-smtp's client does (net/textproto DotWriter) and reports whether a
// receiver splitting lines at any CR or LF finds a line holding only "." nowhere but at the end.
func unsplittable(body []byte) (string, bool) {
	var wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	dw := textproto.NewWriter(bw).DotWriter()
	_, _ = dw.Write(body) // into a bytes.Buffer: cannot fail
	_ = dw.Close()
	_ = bw.Flush()
	segs := strings.FieldsFunc(wire.String(), func(r rune) bool { return r == '\r' || r == '\n' })
	for i, s := range segs {
		if s == "." && i != len(segs)-1 {
			return wire.String(), false
		}
	}
	return wire.String(), true
}

func TestUnsplittable_CatchesWhatTheDotWriterLetsThrough(t *testing.T) {
	// The check itself must be able to fail: a bare CR before a dot passes the DotWriter unchanged.
	for _, body := range []string{"A\r.\rB\r\n", "A\r.\r\nB\r\n"} {
		if wire, ok := unsplittable([]byte(body)); ok {
			t.Errorf("%q (on the wire %q) was judged safe", body, wire)
		}
	}
	if _, ok := unsplittable([]byte("A\r\n.\r\nB\r\n")); !ok {
		t.Error("plain CRLF text with a dot line, which the DotWriter stuffs, was judged unsafe")
	}
}

// sink is a go-smtp server on loopback whose backend reports the bytes its Data handler reads.
type sink struct {
	addr string
	got  chan string
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: ln.Addr().String(), got: make(chan string, 1)}
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "sink.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

type sinkBackend struct{ s *sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession(b), nil }

type sinkSession struct{ s *sink }

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.got <- string(b)
	return nil
}

// sendDATA sends body (ending in CRLF) over DATA, raw (no dot-stuffing: that is the point), and returns what the backend read.
func (s *sink) sendDATA(t *testing.T, body string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewConn(conn)
	expect := func(code int) {
		t.Helper()
		if _, _, err := tp.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
	}
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(conn, line); err != nil {
			t.Fatal(err)
		}
	}
	expect(220)
	send("EHLO client.test\r\n")
	expect(250)
	send("MAIL FROM:<a@example.com>\r\n")
	expect(250)
	send("RCPT TO:<b@example.org>\r\n")
	expect(250)
	send("DATA\r\n")
	expect(354)
	send(body + ".\r\n") // body ends with CRLF
	expect(250)
	send("QUIT\r\n")
	select {
	case got := <-s.got:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("the backend never got the message")
		return ""
	}
}
