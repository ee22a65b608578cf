package message

import (
	"bytes"
	"io"

	"ptrelay/relay/smtpstatus"
)

// LineEndings says what the Filter does with a bare CR or a bare LF (config key smtp.bare_newlines).
type LineEndings int

const (
	// Reject refuses a message holding any bare CR or bare LF (the default, SMTP smuggling defence).
	Reject LineEndings = iota
	// Normalize turns every bare CR and bare LF into CRLF (Postfix 3.9 smtpd_forbid_bare_newline = normalize),
	// for devices that send bare LF.
	Normalize
)

// ErrBareNewline is what a Filter in Reject mode returns, from Write or Close, once it has seen a bare CR or a
// bare LF. The message must not be queued.
var ErrBareNewline = &smtpstatus.Error{
	Status: smtpstatus.BareNewline,
	Op:     "data",
	Fix: "the client sent a line ending that is not CR LF; fix the sending software, or set " +
		`smtp.bare_newlines = "normalize" for devices that cannot`,
}

// ErrLineTooLong is what a Filter with a line length limit returns, from Write, once a line of the message is
// longer than the limit. The message must not be queued.
var ErrLineTooLong = &smtpstatus.Error{
	Status: smtpstatus.New(554, smtpstatus.Enhanced{5, 6, 0}, "Error: a line of the message is too long"),
	Op:     "data",
	Fix:    "the sending software must wrap its lines (RFC 5322 allows 998 characters) or encode its attachments",
}

// Filter receives message content exactly as go-smtp hands it to the backend (for DATA already dot-unstuffed,
// for BDAT raw with arbitrary chunk boundaries) and writes it to dst:
//
//   - Reject: the bytes pass unchanged; a bare CR or bare LF anywhere makes Write or Close return
//     ErrBareNewline, then every later call returns it too. A CR at the end of one Write followed by an LF at
//     the start of the next is a proper CRLF.
//   - Normalize: a bare LF ends a line and becomes CRLF. A bare CR becomes CRLF as well: some receivers take a
//     lone CR for a line end, so "\r.\r" would be an end of data to them; kept as is it would pass a
//     dot-stuffing DATA writer (which only looks after CRLF) unchanged and could split the message at the next
//     hop. Turning it into CRLF makes the dot a line of its own, which the writer then stuffs.
//
// With SetMaxLineLength, a line longer than the limit (its CR LF not counted) makes Write return ErrLineTooLong
// in either mode, and every later call too.
//
// In both modes, what reaches dst without an error is plain CRLF text: once a DATA writer has dot-stuffed it,
// no receiver can find an end of data in it but the writer's own. After an error, what dst already received
// is a partial message: discard it. Filter does not close dst.
type Filter struct {
	dst       io.Writer
	mode      LineEndings
	pendingCR bool // the last byte seen was a CR whose partner has not arrived yet
	n         int64
	err       error
	buf       []byte // Normalize output scratch, reused across writes
	maxLine   int    // 0: no limit
	lineLen   int    // bytes of the current line seen so far; in Reject mode a pending CR included
}

// NewFilter returns a Filter writing to dst.
func NewFilter(dst io.Writer, mode LineEndings) *Filter {
	return &Filter{dst: dst, mode: mode}
}

// SetMaxLineLength limits the length of a line, CR LF not counted; 0 (the default) means no limit.
func (f *Filter) SetMaxLineLength(n int) { f.maxLine = n }

// lineTooLong records ErrLineTooLong when a line of n bytes (CR LF not counted) is over the limit.
func (f *Filter) lineTooLong(n int) bool {
	if f.maxLine > 0 && n > f.maxLine {
		f.err = ErrLineTooLong
		return true
	}
	return false
}

// N returns how many bytes were written to dst: the size of the message as stored.
func (f *Filter) N() int64 { return f.n }

// Write filters p. In Reject mode it returns 0 and ErrBareNewline when p completes a bare CR or holds a bare LF,
// without writing any of p. Errors from dst are returned as they are and stick.
func (f *Filter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.mode == Normalize {
		return f.normalize(p)
	}
	return f.reject(p)
}

func (f *Filter) reject(p []byte) (int, error) {
	// Only CR and LF matter. Every LF must follow a CR, and every CR must be followed by an LF: so check the
	// byte before each LF (IndexByte, vectorised) and then that the chunk holds no other CR (one vectorised
	// Count), instead of looking at every byte in Go code. A CR at the very end may be completed by the next Write.
	// The same walk from LF to LF measures the lines.
	rest := p
	lineLen := f.lineLen
	if f.pendingCR {
		if len(rest) == 0 {
			return f.write(p, 0)
		}
		if rest[0] != '\n' {
			f.err = ErrBareNewline // a CR not followed by LF
			return 0, f.err
		}
		rest = rest[1:]
		lineLen = 0
	}
	lines, longest := 0, 0
	off := 0
	for {
		i := bytes.IndexByte(rest[off:], '\n')
		if i < 0 {
			break
		}
		if off+i == 0 || rest[off+i-1] != '\r' {
			f.err = ErrBareNewline // an LF not preceded by CR
			return 0, f.err
		}
		longest = max(longest, lineLen+i-1) // i counts the CR
		lineLen = 0
		lines++
		off += i + 1
	}
	pending := len(rest) > 0 && rest[len(rest)-1] == '\r'
	lineLen += len(rest) - off
	if pending {
		longest = max(longest, lineLen-1) // the CR is the start of a line ending
	} else {
		longest = max(longest, lineLen)
	}
	want := lines
	if pending {
		want++
	}
	if bytes.Count(rest, []byte{'\r'}) != want {
		f.err = ErrBareNewline // a CR inside a line
		return 0, f.err
	}
	// Measured only now: a bare CR (refused above) would have counted as part of a line.
	if f.lineTooLong(longest) {
		return 0, f.err
	}
	f.pendingCR = pending
	f.lineLen = lineLen
	return f.write(p, len(p))
}

func (f *Filter) normalize(p []byte) (int, error) {
	out := f.buf[:0]
	for _, c := range p {
		if f.pendingCR {
			f.pendingCR = false
			out = append(out, '\r', '\n') // CRLF, or a bare CR made into one
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			f.pendingCR = true // hold it: the LF may come in the next Write
			f.lineLen = 0
		case '\n':
			out = append(out, '\r', '\n') // bare LF
			f.lineLen = 0
		default:
			out = append(out, c)
			f.lineLen++
			if f.lineTooLong(f.lineLen) {
				return 0, f.err
			}
		}
	}
	if cap(out) <= 64<<10 {
		f.buf = out // keep ordinary scratch buffers, let a huge one go
	}
	return f.write(out, len(p))
}

// write sends out to dst and reports consumed input bytes, or the sticky error.
func (f *Filter) write(out []byte, consumed int) (int, error) {
	if len(out) == 0 {
		return consumed, nil
	}
	n, err := f.dst.Write(out)
	f.n += int64(n)
	if err == nil && n < len(out) {
		err = io.ErrShortWrite
	}
	if err != nil {
		f.err = err
		return 0, err
	}
	return consumed, nil
}

// Close ends the message: a CR still pending is a bare CR (Reject: ErrBareNewline; Normalize: written as CRLF).
// It returns the first error seen by the Filter, if any. It does not close dst.
func (f *Filter) Close() error {
	if f.err != nil {
		return f.err
	}
	if !f.pendingCR {
		return nil
	}
	f.pendingCR = false
	if f.mode != Normalize {
		f.err = ErrBareNewline
		return f.err
	}
	_, err := f.write([]byte("\r\n"), 0)
	return err
}
