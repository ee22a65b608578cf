package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// States of the dataReader. The state machine is the one of net/textproto's
// dotReader, with only one modification to not rewrite CRLF -> LF.
const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

// Read elides leading dots and detects the End-of-Data (<CR><LF>.<CR><LF>)
// line.
//
// It works on the bytes already in the bufio.Reader's buffer instead of
// calling ReadByte for each of them: in the middle of a line only a CR can
// change the state, so the bytes up to the next CR are found with
// bytes.IndexByte and copied at once, and only the few bytes around line
// ends go through the state machine one by one. The result is byte for byte
// the one of the former ReadByte loop: the same bytes are consumed from the
// bufio.Reader, the same data and error are returned from each call, and the
// underlying reader is read at the same points.
func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	for n < len(b) && r.state != stateEOF {
		var buf []byte
		if r.r.Buffered() == 0 {
			// Fill the buffer, exactly when ReadByte would have.
			if _, err = r.r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				break
			}
		}
		buf, _ = r.r.Peek(r.r.Buffered())

		i := 0 // bytes of buf consumed
		for i < len(buf) && n < len(b) && r.state != stateEOF {
			if r.state == stateData {
				chunk := buf[i:]
				if room := len(b) - n; len(chunk) > room {
					chunk = chunk[:room]
				}
				j := bytes.IndexByte(chunk, '\r')
				if j < 0 {
					n += copy(b[n:], chunk)
					i += len(chunk)
					continue
				}
				n += copy(b[n:], chunk[:j+1])
				i += j + 1
				r.state = stateCR
				continue
			}

			c := buf[i]
			i++
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
			}
			b[n] = c
			n++
		}
		r.r.Discard(i)
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}
