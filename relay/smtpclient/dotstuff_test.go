package smtpclient

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/textproto"
	"testing"
)

// viaDotWriter is what go-smtp's DataCommand alone puts on the wire for body.
func viaDotWriter(t *testing.T, body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	if _, err := dw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// viaStuffer is what the delivery path puts on the wire: the stuffed body straight to the connection, then the
// final line break and the terminator through the DotWriter, written in chunks of the given sizes.
func viaStuffer(t *testing.T, body []byte, chunks []int) []byte {
	var out bytes.Buffer
	s := newDotStuffer(&out)
	rest := body
	for i := 0; len(rest) > 0; i++ {
		n := min(chunks[i%len(chunks)], len(rest))
		if _, err := s.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	if err := s.finish(dw); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDotStuffer_SameBytesAsDotWriter(t *testing.T) {
	cases := map[string]string{
		"empty":             "",
		"one line":          "Subject: x\r\n\r\nhello\r\n",
		"no final CRLF":     "Subject: x\r\n\r\nhello",
		"leading dots":      ".\r\n..\r\n.x\r\nx.\r\n.",
		"dot at start":      ".hidden\r\n",
		"only CRLF":         "\r\n",
		"blank lines":       "a\r\n\r\n\r\n.\r\n",
		"ends with CR":      "a\r\nb\r",
		"dot after CR LF":   "a\r\n.\r\n.\r\n",
		"long line":         string(bytes.Repeat([]byte("x"), 5000)) + "\r\n.end\r\n",
		"terminator inside": "a\r\n.\r\nMAIL FROM:<x@y>\r\n",
	}
	chunkings := [][]int{{1}, {2}, {3}, {1, 2}, {7}, {64 << 10}}
	for name, body := range cases {
		want := viaDotWriter(t, []byte(body))
		for _, ch := range chunkings {
			if got := viaStuffer(t, []byte(body), ch); !bytes.Equal(got, want) {
				t.Errorf("%s, chunks %v:\n got %q\nwant %q", name, ch, got, want)
			}
		}
	}
}

func TestDotStuffer_RandomCRLFText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{".", "a", "\r\n", "..", "\r\n.", " "}
	for i := range 2000 {
		var b bytes.Buffer
		for range rng.IntN(60) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		chunks := []int{1 + rng.IntN(9), 1 + rng.IntN(3)}
		if got, want := viaStuffer(t, b.Bytes(), chunks), viaDotWriter(t, b.Bytes()); !bytes.Equal(got, want) {
			t.Fatalf("case %d %q chunks %v:\n got %q\nwant %q", i, b.Bytes(), chunks, got, want)
		}
	}
}
