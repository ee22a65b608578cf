package inbound

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/queue"
)

// FuzzSession writes the fuzzer's input, as lines, to a live inbound listener (chasquid's FuzzConnection idea),
// then half-closes the connection. Whatever the input, the server must answer only well-formed replies, hang up
// once the client is gone, stay up for the next client, and store only plain CRLF text.
func FuzzSession(f *testing.F) {
	f.Add([]byte("EHLO x\nMAIL FROM:<a@contoso.com>\nRCPT TO:<b@example.org>\nDATA\nSubject: s\n\nbody\n.\nQUIT"))
	f.Add([]byte("EHLO x\nMAIL FROM:<a@contoso.com> BODY=8BITMIME SIZE=20\nRCPT TO:<b@example.org>\nBDAT 9\nSubject: BDAT 0 LAST\nQUIT"))
	f.Add([]byte("EHLO x\nAUTH LOGIN\nZXhjaGFuZ2U=\nczNjcmV0IHBhc3M=\nAUTH PLAIN AGV4Y2hhbmdlAHdyb25n\nNOOP"))

	cfg := testConfig(f)
	var mu sync.Mutex
	var accepted []string
	q, err := queue.Open(queue.Options{Dir: filepath.Join(f.TempDir(), "queue"), Logger: testLogger(f)})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := newServer(cfg, queueStore{q}, testLogger(f), Hooks{OnAccepted: func(id string, _ int64) {
		mu.Lock()
		accepted = append(accepted, id)
		mu.Unlock()
	}})
	if err != nil {
		f.Fatal(err)
	}
	srv.idle = 5 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = q.Close()
	})
	addr := l.Addr().String()

	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("server down: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		var out []byte
		readDone := make(chan error, 1)
		go func() {
			b, err := io.ReadAll(c)
			out = b
			readDone <- err
		}()
		wire := strings.ReplaceAll(string(input), "\n", "\r\n")
		if !strings.HasSuffix(wire, "\r\n") {
			wire += "\r\n"
		}
		_, _ = io.WriteString(c, wire)
		_ = c.(*net.TCPConn).CloseWrite()
		if err := <-readDone; err != nil {
			t.Fatalf("server did not hang up after the client's EOF: %v\ninput %q\noutput %q", err, input, out)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "220 ") {
			t.Fatalf("no greeting: %q", out)
		}
		for _, line := range lines {
			if len(line) < 4 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' || (line[3] != ' ' && line[3] != '-') {
				t.Fatalf("malformed reply line %q\ninput %q", line, input)
			}
		}
		mu.Lock()
		ids := accepted
		accepted = nil
		mu.Unlock()
		for _, id := range ids {
			rc, err := q.Body(id)
			if err != nil {
				t.Fatalf("accepted %s but cannot read it: %v", id, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if !onlyCRLF(b) {
				t.Fatalf("stored a bare CR or LF in %s: %q\ninput %q", id, b, input)
			}
			m, err := q.Get(id)
			if err != nil || len(m.Recipients) == 0 {
				t.Fatalf("accepted %s: %v %+v", id, err, m)
			}
		}
	})
}
