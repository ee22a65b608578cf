package message

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"io"
	"strings"
	"time"
)

// MaxHeaderBytes bounds what a HeaderCompleter buffers while it looks for the end of the header section.
const MaxHeaderBytes = 256 << 10

// Trace is what a HeaderCompleter adds to a message.
type Trace struct {
	Received string    // the full Received value (what follows "Received: "), as built by ReceivedValue
	Hostname string    // our name, the domain of a generated Message-ID
	Now      time.Time // the Date of a message that has none
}

// HeaderCompleter writes a message to dst with a Received field first and, when the header section has no
// Message-ID or no Date, those fields added at its end (RFC 5322 3.6 requires Date, recommends
// Message-ID). It buffers only the header section, at most MaxHeaderBytes; the body streams through unchanged.
//
// The header section is the run of lines from the start that are fields ("name:" with optional blanks before
// the colon) or continuations of one (a line starting with a blank). It ends at the first empty line, at the
// first other line, or at the end of the message:
//   - empty line: the added fields go before it, the body after it is untouched;
//   - another line (a message without headers, or "From x" mbox junk): the added fields go before it and an
//     empty line is inserted, otherwise that line would read as part of the header (Postfix cleanup does so);
//   - end of message: a last header line without CRLF gets one, then the added fields; an empty message
//     becomes the three fields alone.
//
// When the first MaxHeaderBytes bytes hold no end of the header section, what was seen is treated as a header-less
// body: the Received field is still prepended, nothing else is added (we cannot tell whether Message-ID and
// Date are in there), and the rest streams through.
//
// Input is expected to be CRLF text (a Filter's output); lines are found at LF. HeaderCompleter does not close
// dst.
type HeaderCompleter struct {
	dst      io.Writer
	t        Trace
	buf      []byte // the header section so far, while !streaming
	scanned  int    // buf[:scanned] is complete lines already classified as header lines
	searched int    // buf[scanned:searched] holds no LF: tiny writes of a long line are not rescanned
	hasMID   bool
	hasDate  bool
	stream   bool // the header work is done: everything goes straight to dst
	err      error
	closed   bool
}

// NewHeaderCompleter returns a HeaderCompleter writing to dst.
func NewHeaderCompleter(dst io.Writer, t Trace) *HeaderCompleter {
	return &HeaderCompleter{dst: dst, t: t}
}

// Write buffers p until the end of the header section is known, then writes through. Errors from dst stick.
func (h *HeaderCompleter) Write(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if h.stream {
		return h.write(p, len(p))
	}
	h.buf = append(h.buf, p...)
	for {
		i := bytes.IndexByte(h.buf[h.searched:], '\n')
		if i < 0 {
			h.searched = len(h.buf)
			break
		}
		if h.searched+i+1 > MaxHeaderBytes {
			break // this line ends past the limit: the header section does not end in time
		}
		line := h.buf[h.scanned : h.searched+i+1]
		switch h.classify(line, h.scanned == 0) {
		case lineHeader:
			h.scanned += len(line)
			h.searched = h.scanned
			continue
		case lineEmpty:
			return h.finish(h.scanned, false, len(p))
		default:
			return h.finish(h.scanned, true, len(p))
		}
	}
	// The decision depends only on the first MaxHeaderBytes bytes, never on how the input was cut into writes.
	if len(h.buf) > MaxHeaderBytes {
		h.stream = true
		out := append([]byte(foldField("Received", h.t.Received)), h.buf...)
		h.buf = nil
		return h.write(out, len(p))
	}
	return len(p), nil
}

// Close writes out a message that ended inside its header section. It does not close dst.
func (h *HeaderCompleter) Close() error {
	if h.err != nil || h.closed {
		return h.err
	}
	h.closed = true
	if h.stream {
		return nil
	}
	rest := h.buf[h.scanned:] // the last line, without LF, or nothing
	if len(rest) == 0 || h.classify(rest, h.scanned == 0) != lineHeader {
		_, err := h.finish(h.scanned, len(rest) > 0, 0)
		return err
	}
	// A header line cut short by the end of the message: terminate it, then add our fields after it.
	h.buf = append(h.buf, '\r', '\n')
	h.scanned = len(h.buf)
	_, err := h.finish(h.scanned, false, 0)
	return err
}

type lineKind int

const (
	lineHeader lineKind = iota
	lineEmpty
	lineOther
)

// classify looks at one line (with its LF, or the unterminated last one) and records Message-ID and Date.
func (h *HeaderCompleter) classify(line []byte, first bool) lineKind {
	content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(content) == 0 && len(line) > 0 && line[len(line)-1] == '\n' {
		return lineEmpty
	}
	if len(content) > 0 && (content[0] == ' ' || content[0] == '\t') {
		if first {
			return lineOther // a continuation of nothing
		}
		return lineHeader
	}
	name, ok := fieldName(content)
	if !ok {
		return lineOther
	}
	switch strings.ToLower(name) {
	case "message-id":
		h.hasMID = true
	case "date":
		h.hasDate = true
	}
	return lineHeader
}

// fieldName returns the name of a header field line: printable ASCII but ':' (RFC 5322 ftext), then optional
// blanks (the obsolete syntax of RFC 5322 4.5.8), then ':'.
func fieldName(line []byte) (string, bool) {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return "", false
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j == len(line) || line[j] != ':' {
		return "", false
	}
	return string(line[:i]), true
}

// finish writes the Received field, the header section buf[:end], the missing fields, an empty line when
// separate is set (the body starts without one), then the rest of buf; from then on everything streams.
func (h *HeaderCompleter) finish(end int, separate bool, consumed int) (int, error) {
	var out bytes.Buffer
	out.Grow(len(h.buf) + 512)
	out.WriteString(foldField("Received", h.t.Received))
	out.Write(h.buf[:end])
	if !h.hasMID {
		out.WriteString("Message-ID: <" + messageIDLocal() + "@" + orUnknown(safeWord(h.t.Hostname)) + ">\r\n")
	}
	if !h.hasDate {
		out.WriteString("Date: " + h.t.Now.Format(time.RFC1123Z) + "\r\n")
	}
	if separate {
		out.WriteString("\r\n")
	}
	out.Write(h.buf[end:])
	h.buf = nil
	h.stream = true
	return h.write(out.Bytes(), consumed)
}

func (h *HeaderCompleter) write(out []byte, consumed int) (int, error) {
	if len(out) == 0 {
		return consumed, nil
	}
	n, err := h.dst.Write(out)
	if err == nil && n < len(out) {
		err = io.ErrShortWrite
	}
	if err != nil {
		h.err = err
		return 0, err
	}
	return consumed, nil
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// messageIDLocal returns a random left-hand side: 15 random bytes (120 bits) make collisions a non-issue
// without consulting any state.
func messageIDLocal() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return idEncoding.EncodeToString(b[:])
}
