package admin

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRenderShow feeds RenderShow message bodies as a client may send them (the headers come from the
// network): it must not fail or panic, must bound what it prints as headers, and with -body must print every
// body byte after the header block (CRLF shown as LF).
func FuzzRenderShow(f *testing.F) {
	f.Add([]byte("Subject: hi\r\n\r\nbody\r\n"), true)
	f.Add([]byte("Subject: hi\n\tfolded\n\nbare LF body\n"), true)
	f.Add([]byte("no blank line at all"), false)
	f.Add([]byte("\r\n\r\n\r\n"), true)
	f.Add([]byte("A: b\rC: d\r\n\r\nx\ry\r\n"), true)
	m := fixture()[1]
	f.Fuzz(func(t *testing.T, body []byte, showBody bool) {
		var out bytes.Buffer
		if err := RenderShow(&out, m, bytes.NewReader(body), showBody); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		head, _, _ := strings.Cut(text, "\nRecipients:\n")
		if n := strings.Count(head, "\n"); n > maxHeaderLines+20 {
			t.Fatalf("%d header lines printed", n)
		}
		if !showBody {
			return
		}
		rest, ok := afterHeaders(body)
		if !ok {
			return
		}
		want := strings.ReplaceAll(string(rest), "\r\n", "\n")
		if _, got, found := strings.Cut(text, "\nBody:\n"); !found || got != want {
			t.Fatalf("body printed as %q, want %q", got, want)
		}
	})
}

// afterHeaders returns what follows the first empty line, when the header block is small enough to be shown
// whole (otherwise the renderer stops early and the rest is not compared).
func afterHeaders(body []byte) ([]byte, bool) {
	lines := 0
	for i := 0; i < len(body); {
		j := bytes.IndexByte(body[i:], '\n')
		if j < 0 {
			return nil, false
		}
		line := bytes.TrimRight(body[i:i+j+1], "\r\n")
		if len(line) == 0 {
			return body[i+j+1:], i < maxHeaderBytes
		}
		lines++
		if lines > maxHeaderLines-1 {
			return nil, false
		}
		i += j + 1
	}
	return nil, false
}
