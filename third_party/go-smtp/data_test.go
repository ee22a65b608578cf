package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/ioutil"
	"strings"
	"testing"
)

// byteDataReader is the DATA reader of go-smtp v0.25.1, which read the
// message one byte at a time. It is kept here as the reference the current
// dataReader must agree with, byte for byte and error for error.
type byteDataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func (r *byteDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	const (
		stateBeginLine = iota // beginning of line; initial state; must be zero
		stateDot              // read . at beginning of line
		stateDotCR            // read .\r at beginning of line
		stateCR               // read \r (possibly at end of line)
		stateData             // reading data in middle of line
		stateEOF              // reached .\r\n end marker line
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}

var errCut = errors.New("connection reset by peer")

// scriptedReader plays data back in reads of the sizes given (cycling; a
// size of 0 is a read that returns nothing, never twice in a row, since
// io.Reader callers may loop on those), then ends: with io.EOF (the
// client closed the connection), with errCut (the connection broke), and
// either after the last data or together with it.
type scriptedReader struct {
	data     []byte
	sizes    []byte
	i        int
	end      error
	together bool // the last data comes with the end error
	reads    int  // reads so far, to compare where each reader read
	empty    bool // the last read returned nothing
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	s.reads++
	if len(s.data) == 0 {
		return 0, s.end
	}
	size := len(s.data)
	if len(s.sizes) > 0 {
		size = int(s.sizes[s.i%len(s.sizes)])
		s.i++
	}
	if size == 0 && s.empty {
		size = 1
	}
	s.empty = size == 0
	if size > len(p) {
		size = len(p)
	}
	if size > len(s.data) {
		size = len(s.data)
	}
	n := copy(p, s.data[:size])
	s.data = s.data[n:]
	if len(s.data) == 0 && s.together {
		return n, s.end
	}
	return n, nil
}

type readResult struct {
	data string
	err  error
}

func (r readResult) String() string {
	return fmt.Sprintf("%q, %v", r.data, r.err)
}

// compareReaders feeds input to the old and the new DATA reader alike and
// fails on the first difference: in what each Read returns, in where the
// underlying reader is read, and in what is left for the commands that follow.
// Like go-smtp after Data returns, it lifts the size limit once the limit was
// hit and reads on to the end of the message.
func compareReaders(t *testing.T, input, readSizes, chunkSizes []byte, limit int64, bufSize int, end byte) {
	t.Helper()
	newSource := func() *scriptedReader {
		s := &scriptedReader{data: input, sizes: chunkSizes, end: io.EOF}
		if end&1 != 0 {
			s.end = errCut
		}
		s.together = end&2 != 0
		return s
	}
	oldSrc, newSrc := newSource(), newSource()
	oldBuf, newBuf := bufio.NewReaderSize(oldSrc, bufSize), bufio.NewReaderSize(newSrc, bufSize)
	oldR := &byteDataReader{r: oldBuf, limited: limit > 0, n: limit}
	newR := &dataReader{r: newBuf, limited: limit > 0, n: limit}

	errorsSeen := 0
	maxReads := 4*len(input) + 16
	for i := 0; i < maxReads && errorsSeen < 3; i++ {
		size := 1 + len(input)
		if len(readSizes) > 0 {
			size = int(readSizes[i%len(readSizes)])
		}
		ob, nb := make([]byte, size), make([]byte, size)
		on, oerr := oldR.Read(ob)
		nn, nerr := newR.Read(nb)
		if old, cur := (readResult{string(ob[:on]), oerr}), (readResult{string(nb[:nn]), nerr}); old != cur {
			t.Fatalf("read %d of %d bytes: old reader returned %v, new reader %v", i, size, old, cur)
		}
		if oldSrc.reads != newSrc.reads {
			t.Fatalf("read %d: old reader read the connection %d times, new reader %d times", i, oldSrc.reads, newSrc.reads)
		}
		if oldR.state != newR.state || oldR.n != newR.n {
			t.Fatalf("read %d: state %d, remaining %d (old) vs state %d, remaining %d (new)", i, oldR.state, oldR.n, newR.state, newR.n)
		}
		if oerr == ErrDataTooLarge {
			oldR.limited, newR.limited = false, false
		}
		if oerr != nil {
			errorsSeen++
		}
	}
	oldRest, oerr := ioutil.ReadAll(oldBuf)
	newRest, nerr := ioutil.ReadAll(newBuf)
	if string(oldRest) != string(newRest) || oerr != nerr {
		t.Fatalf("left after the message: %q, %v (old) vs %q, %v (new)", oldRest, oerr, newRest, nerr)
	}
}

// FuzzDataReader checks the line-at-a-time DATA reader against the former
// byte-at-a-time one on arbitrary input, read sizes, buffer sizes, chunking
// of the connection, size limits and ends of the connection.
func FuzzDataReader(f *testing.F) {
	seeds := []string{
		"Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n",
		".\r\n",
		"..\r\n.\r\n",
		".x\r\n..y\r\n...\r\n.\r\n",
		"line\n.\nstill data\r\n.\r\n",
		"line\r\n.\n.\r\n",
		"a\r.\r\nb\r\n.\r\n",
		"a\r\n.\rX\r\n.\r\n",
		"a\r\r\n.\r\nb\r\n.\r\n",
		"a\r\n\r\n.\r\n",
		"\r\n.\r\n",
		"cut in the middle of a line",
		"cut after a CR\r",
		"cut after a line\r\n",
		"cut after a dot\r\n.",
		"cut after dot CR\r\n.\r",
		strings.Repeat("x", 100) + "\r\n.\r\n",
		strings.Repeat("abc\r\n", 40) + ".\r\nMAIL FROM:<a@b>\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), []byte{byte(i%7 + 1), 3, 16}, []byte{byte(i%5 + 1), 7}, uint16(0), uint8(i), uint8(i%4))
		f.Add([]byte(s), []byte{255}, []byte{}, uint16(len(s)/2+1), uint8(0), uint8(i%4))
	}
	f.Fuzz(func(t *testing.T, input, readSizes, chunkSizes []byte, limit uint16, bufSize, end uint8) {
		if len(input) > 1<<16 {
			return
		}
		// 16 is the smallest buffer bufio gives; small buffers put line ends,
		// dots and CRs on buffer boundaries often.
		compareReaders(t, input, readSizes, chunkSizes, int64(limit), 16+int(bufSize), end)
	})
}

// The cases FuzzDataReader starts from, each with read and buffer sizes that
// put the interesting bytes on boundaries, checked against the old reader.
func TestDataReader_sameAsByteReader(t *testing.T) {
	inputs := []string{
		"Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n",
		"..\r\n...\r\n.x\r\n.\r\n",
		"a\r.\r\nb\n.\nc\r\n.\rX\r\nd\r\r\n.\r\ne\r\n.\r\n",
		"no end of data\r\n",
		"ends with a dot\r\n.",
		"ends with dot CR\r\n.\r",
		strings.Repeat("0123456789abcdef", 8) + "\r\n.\r\n",
	}
	for _, in := range inputs {
		for _, bufSize := range []int{16, 17, 4096} {
			for _, readSize := range []byte{1, 2, 3, 5, 15, 16, 17, 255} {
				for _, limit := range []int64{0, 1, 5, 16, 17, int64(len(in))} {
					for end := byte(0); end < 4; end++ {
						name := fmt.Sprintf("%q/buf%d/read%d/limit%d/end%d", in, bufSize, readSize, limit, end)
						t.Run(name, func(t *testing.T) {
							compareReaders(t, []byte(in), []byte{readSize}, []byte{3, 1, 16}, limit, bufSize, end)
						})
					}
				}
			}
		}
	}
}

// What the DATA reader returns, spelled out, for the cases that matter to a
// server: dot-unstuffing, the end of data, what is left for the next
// command, a cut connection and the size limit.
func TestDataReader(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		limit int64
		data  string
		err   error
		rest  string
	}{
		{name: "plain", in: "a\r\nb\r\n.\r\nQUIT\r\n", data: "a\r\nb\r\n", err: io.EOF, rest: "QUIT\r\n"},
		{name: "empty message", in: ".\r\nNOOP\r\n", data: "", err: io.EOF, rest: "NOOP\r\n"},
		{name: "dot-stuffed", in: "..\r\n..x\r\n.y\r\n.\r\n", data: ".\r\n.x\r\ny\r\n", err: io.EOF},
		{name: "LF dot LF is data", in: "a\n.\nb\r\n.\r\n", data: "a\n.\nb\r\n", err: io.EOF},
		{name: "CRLF dot LF loses the dot", in: "a\r\n.\nb\r\n.\r\n", data: "a\r\n\nb\r\n", err: io.EOF},
		{name: "CR dot CRLF is data", in: "a\r.\r\nb\r\n.\r\n", data: "a\r.\r\nb\r\n", err: io.EOF},
		{name: "dot CR then other", in: "a\r\n.\rX\r\n.\r\n", data: "a\r\nX\r\n", err: io.EOF},
		{name: "CR CR LF is no line end", in: "a\r\r\n.\r\nb\r\n.\r\n", data: "a\r\r\n.\r\nb\r\n", err: io.EOF},
		{name: "cut connection", in: "a\r\nb", data: "a\r\nb", err: io.ErrUnexpectedEOF},
		{name: "cut after dot", in: "a\r\n.", data: "a\r\n", err: io.ErrUnexpectedEOF},
		{name: "limit mid-line", in: "abcdef\r\n.\r\n", limit: 4, data: "abcd", err: ErrDataTooLarge, rest: "ef\r\n.\r\n"},
		{name: "limit at the end", in: "ab\r\n.\r\n", limit: 4, data: "ab\r\n", err: ErrDataTooLarge, rest: ".\r\n"},
		{name: "under the limit", in: "ab\r\n.\r\n", limit: 5, data: "ab\r\n", err: io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
			r := &dataReader{r: br, limited: tc.limit > 0, n: tc.limit}
			var got bytes.Buffer
			buf := make([]byte, 3)
			var err error
			for i := 0; i < 100 && err == nil; i++ {
				var n int
				n, err = r.Read(buf)
				got.Write(buf[:n])
			}
			if got.String() != tc.data || err != tc.err {
				t.Fatalf("got %q, %v; want %q, %v", got.String(), err, tc.data, tc.err)
			}
			rest, _ := ioutil.ReadAll(br)
			if string(rest) != tc.rest {
				t.Fatalf("left %q, want %q", rest, tc.rest)
			}
		})
	}
}

func benchmarkDataReader(b *testing.B, newReader func(*bufio.Reader) io.Reader) {
	var msg bytes.Buffer
	msg.WriteString("Subject: benchmark\r\n\r\n")
	for msg.Len() < 100000 {
		msg.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n")
	}
	msg.WriteString(".\r\n")
	data := msg.Bytes()
	buf := make([]byte, 32*1024)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	br := bufio.NewReader(nil)
	for i := 0; i < b.N; i++ {
		br.Reset(bytes.NewReader(data))
		r := newReader(br)
		for {
			if _, err := r.Read(buf); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

func BenchmarkDataReader(b *testing.B) {
	benchmarkDataReader(b, func(br *bufio.Reader) io.Reader { return &dataReader{r: br} })
}

func BenchmarkDataReader_byteAtATime(b *testing.B) {
	benchmarkDataReader(b, func(br *bufio.Reader) io.Reader { return &byteDataReader{r: br} })
}
