package smtp

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"testing"
)

// expectedLines is what readLine must return for input: each line, without
// its line ending, or ErrTooLongLine when it is longer than limit bytes with
// its line ending; a last line without a line ending counts as a line.
func expectedLines(input []byte, limit int) []readResult {
	var want []readResult
	for len(input) > 0 {
		end := bytes.IndexByte(input, '\n') + 1
		if end == 0 {
			end = len(input)
		}
		line := input[:end]
		input = input[end:]
		if limit > 0 && len(line) > limit {
			want = append(want, readResult{err: ErrTooLongLine})
			continue
		}
		if line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
		}
		want = append(want, readResult{data: string(line)})
	}
	return append(want, readResult{err: io.EOF})
}

// FuzzReadLine checks the command line reader: lines within the limit come
// out as textproto would return them, each over-long line gives one
// ErrTooLongLine and is skipped whole, however the input is chunked.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT"), []byte{3}, uint16(0), uint8(0))
	f.Add([]byte("NOOP\r\n"+string(bytes.Repeat([]byte("a"), 100))+"\r\nNOOP\r\n"), []byte{7, 1}, uint16(20), uint8(0))
	f.Add([]byte("12345678\r\n123456789\r\n1234567\r\r\n\n\r\n"), []byte{16}, uint16(10), uint8(3))
	f.Add([]byte("long line cut before its end"), []byte{5}, uint16(8), uint8(1))
	f.Fuzz(func(t *testing.T, input, chunkSizes []byte, limit uint16, bufSize uint8) {
		src := &scriptedReader{data: input, sizes: chunkSizes, end: io.EOF}
		c := &Conn{
			server: &Server{MaxLineLength: int(limit)},
			text:   &textproto.Conn{Reader: textproto.Reader{R: bufio.NewReaderSize(src, 16+int(bufSize))}},
		}
		want := expectedLines(input, int(limit))
		for i, w := range want {
			line, err := c.readLine()
			if got := (readResult{line, err}); got != w {
				t.Fatalf("line %d: got %v, want %v", i, got, w)
			}
		}
	})
}
