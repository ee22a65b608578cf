package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// chunkings returns every way to cut in into 1 to 3 writes (empty writes included: they are legal).
func chunkings(in []byte) [][][]byte {
	var out [][][]byte
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j++ {
			out = append(out, [][]byte{in[:i], in[i:j], in[j:]})
		}
	}
	return out
}

// runFilter writes chunks through a Filter and returns what reached the sink and the first error.
func runFilter(mode LineEndings, chunks [][]byte) ([]byte, *Filter, error) {
	return runFilterLimited(mode, 0, chunks)
}

// runFilterLimited is runFilter with a line length limit.
func runFilterLimited(mode LineEndings, maxLine int, chunks [][]byte) ([]byte, *Filter, error) {
	var sink bytes.Buffer
	f := NewFilter(&sink, mode)
	f.SetMaxLineLength(maxLine)
	for _, c := range chunks {
		n, err := f.Write(c)
		if err != nil {
			return sink.Bytes(), f, err
		}
		if n != len(c) {
			return sink.Bytes(), f, fmt.Errorf("short write %d of %d without error", n, len(c))
		}
	}
	err := f.Close()
	return sink.Bytes(), f, err
}

func TestFilter_Table(t *testing.T) {
	cases := []struct {
		name      string
		in        string
		reject    bool   // Reject mode fails
		normalize string // Normalize output
	}{
		{"empty", "", false, ""},
		{"crlf text", "Subject: x\r\n\r\nbody\r\n", false, "Subject: x\r\n\r\nbody\r\n"},
		{"no final newline", "a\r\nb", false, "a\r\nb"},
		{"bare lf", "a\nb\n", true, "a\r\nb\r\n"},
		{"bare cr", "a\rb", true, "a\r\nb"},
		{"trailing bare cr", "a\r", true, "a\r\n"},
		{"cr cr lf", "a\r\r\nb", true, "a\r\n\r\nb"},
		{"lf cr", "a\n\rb", true, "a\r\n\r\nb"},
		{"only lf", "\n", true, "\r\n"},
		{"only cr", "\r", true, "\r\n"},
		{"crlf crlf", "\r\n\r\n", false, "\r\n\r\n"},
		{"8bit and nul kept", "caf\xc3\xa9\x00\r\n", false, "caf\xc3\xa9\x00\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, ch := range chunkings([]byte(tc.in)) {
				out, f, err := runFilter(Reject, ch)
				if tc.reject {
					if !errors.Is(err, ErrBareNewline) {
						t.Fatalf("Reject %q: err = %v, want ErrBareNewline", ch, err)
					}
				} else {
					if err != nil || string(out) != tc.in || f.N() != int64(len(tc.in)) {
						t.Fatalf("Reject %q: out %q N %d err %v, want the input back", ch, out, f.N(), err)
					}
				}
				out, f, err = runFilter(Normalize, ch)
				if err != nil || string(out) != tc.normalize || f.N() != int64(len(out)) {
					t.Fatalf("Normalize %q: out %q N %d err %v, want %q", ch, out, f.N(), err, tc.normalize)
				}
			}
		})
	}
}

func TestFilter_RejectIsSticky(t *testing.T) {
	var sink bytes.Buffer
	f := NewFilter(&sink, Reject)
	if _, err := f.Write([]byte("ok\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("bad\n")); !errors.Is(err, ErrBareNewline) {
		t.Fatalf("err = %v", err)
	}
	if n, err := f.Write([]byte("fine\r\n")); n != 0 || !errors.Is(err, ErrBareNewline) {
		t.Fatalf("after the error: n %d err %v", n, err)
	}
	if err := f.Close(); !errors.Is(err, ErrBareNewline) {
		t.Fatalf("Close: %v", err)
	}
	if sink.String() != "ok\r\n" {
		t.Fatalf("sink %q: nothing after the bare LF may be written", sink.String())
	}
}

func TestFilter_ErrBareNewlineReply(t *testing.T) {
	var err error = ErrBareNewline
	if ErrBareNewline.Code != 550 || ErrBareNewline.Enhanced.String() != "5.6.0" {
		t.Fatalf("reply %s, want 550 5.6.0", ErrBareNewline.Status)
	}
	if !strings.Contains(err.Error(), "CR") {
		t.Fatalf("text %q does not say what is wrong", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, io.ErrClosedPipe
	}
	w.after--
	return len(p), nil
}

func TestFilter_DstErrorSticks(t *testing.T) {
	for _, mode := range []LineEndings{Reject, Normalize} {
		f := NewFilter(&failWriter{after: 1}, mode)
		if _, err := f.Write([]byte("a\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("b\r\n")); !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("mode %d: err = %v", mode, err)
		}
		if err := f.Close(); !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("mode %d: Close = %v", mode, err)
		}
	}
}

func TestFilter_CloseFlushesPendingCR(t *testing.T) {
	var sink bytes.Buffer
	f := NewFilter(&sink, Normalize)
	if _, err := f.Write([]byte("x\r")); err != nil {
		t.Fatal(err)
	}
	if sink.String() != "x" {
		t.Fatalf("before Close %q: the CR must wait for its LF", sink.String())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if sink.String() != "x\r\n" || f.N() != 3 {
		t.Fatalf("after Close %q N %d", sink.String(), f.N())
	}
}

// A line longer than the limit, CR LF not counted, is refused in both modes, wherever the writes cut it; a line
// of exactly the limit passes.
func TestFilter_MaxLineLength(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		tooLong bool
	}{
		{"at the limit", "abcd\r\nefgh\r\n", false},
		{"at the limit, last line unterminated", "abcd\r\nefgh", false},
		{"one over", "abcd\r\nefghi\r\n", true},
		{"one over, first line", "abcde\r\n", true},
		{"one over, last line unterminated", "ab\r\nabcde", true},
		{"empty lines", "\r\n\r\n\r\n", false},
	}
	for _, tc := range cases {
		for _, mode := range []LineEndings{Reject, Normalize} {
			for _, chunks := range chunkings([]byte(tc.in)) {
				out, _, err := runFilterLimited(mode, 4, chunks)
				if tc.tooLong != (err == ErrLineTooLong) {
					t.Fatalf("%s, mode %d, %q: err %v", tc.name, mode, chunks, err)
				}
				if !tc.tooLong && string(out) != tc.in {
					t.Fatalf("%s, mode %d, %q: out %q", tc.name, mode, chunks, out)
				}
			}
		}
	}
	// The error sticks, and a bare LF in Normalize mode ends a line as CRLF does.
	f := NewFilter(io.Discard, Normalize)
	f.SetMaxLineLength(4)
	if _, err := f.Write([]byte("abcd\nefgh\rijkl\r\n")); err != nil {
		t.Fatalf("normalize, lines at the limit: %v", err)
	}
	if _, err := f.Write([]byte("abcdefgh")); err != ErrLineTooLong {
		t.Fatalf("normalize, long line: %v", err)
	}
	if _, err := f.Write([]byte("a\r\n")); err != ErrLineTooLong {
		t.Fatalf("after ErrLineTooLong: %v", err)
	}
	if err := f.Close(); err != ErrLineTooLong {
		t.Fatalf("Close after ErrLineTooLong: %v", err)
	}
}
