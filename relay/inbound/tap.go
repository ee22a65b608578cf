package inbound

import (
	"bytes"
	"sync/atomic"
)

// tap watches a connection's decrypted input for the one bare CR the data path cannot see.
//
// go-smtp's DATA reader removes dot-stuffing, and for a line that starts with ".\r" followed by anything but "\n"
// it drops both the dot and the CR (the stateDotCR case of third_party/go-smtp/data.go): "\r\n.\rX" reaches Data as
// "\r\nX". What is stored is then plain CRLF text, so nothing can be smuggled through it, but the client did send a
// bare CR and smtp.bare_newlines = "reject" promises to refuse such a message. Only the raw input shows it.
// go-smtp's Debug writer gets every byte read (a tee above TLS) and every reply written, from the connection's
// goroutine; the tap tells them apart because each reply is written to the connection just before it is copied to
// Debug (conn.Write sets wrote). After a "354" reply it runs go-smtp's own DATA state machine over the input up to
// the end of data and records whether the dropped ".\r" case happened.
//
// Limits, accepted because what is stored stays clean CRLF text either way: body bytes a client sends before
// it has seen the 354 (forbidden by RFC 2920) are not scanned, and a TLS 1.3 KeyUpdate answered inside a read
// could make one input chunk look like a reply.
type tap struct {
	c      *conn
	inData bool
	state  int
	dotCR  atomic.Bool // a ".\r" at a line start was dropped by go-smtp in the current DATA
}

// The states of go-smtp's dataReader (data.go), mirrored so the tap's idea of "line start" and "end of data"
// is go-smtp's.
const (
	tapBeginLine = iota
	tapDot
	tapDotCR
	tapCR
	tapData
)

var reply354 = []byte("354 ")

func (t *tap) Write(p []byte) (int, error) {
	if t.c.wrote.Swap(false) { // a reply: any reply ends what a previous DATA recorded
		t.dotCR.Store(false)
		t.inData, t.state = bytes.HasPrefix(p, reply354), tapBeginLine
		return len(p), nil
	}
	if t.inData {
		t.scanFast(p)
	}
	return len(p), nil
}

func (t *tap) scan(p []byte) {
	for _, c := range p {
		switch t.state {
		case tapBeginLine:
			if c == '.' {
				t.state = tapDot
				continue
			}
			if c == '\r' {
				t.state = tapCR
				continue
			}
			t.state = tapData
		case tapDot:
			if c == '\r' {
				t.state = tapDotCR
				continue
			}
			t.state = tapData
		case tapDotCR:
			if c == '\n' { // end of data: what follows is commands
				t.inData = false
				return
			}
			t.dotCR.Store(true)
			t.state = tapData
		case tapCR:
			if c == '\n' {
				t.state = tapBeginLine
				continue
			}
			t.state = tapData
		case tapData:
			if c == '\r' {
				t.state = tapCR
			}
		}
	}
}

// scanFast is scan with the middle of each line skipped: in tapData only a CR can change the state, and
// IndexByte finds it without looking at every byte in Go code (this scan costs a tenth of the CPU otherwise).
func (t *tap) scanFast(p []byte) {
	for len(p) > 0 && t.inData {
		if t.state == tapData {
			i := bytes.IndexByte(p, '\r')
			if i < 0 {
				return
			}
			p = p[i:]
		}
		// Feed bytes one at a time until the state is back in the middle of a line.
		j := 0
		for j < len(p) && t.inData {
			t.scan(p[j : j+1])
			j++
			if t.state == tapData {
				break
			}
		}
		p = p[j:]
	}
}
