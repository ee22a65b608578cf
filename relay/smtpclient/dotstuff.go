package smtpclient

import (
	"bufio"
	"bytes"
	"io"
)

// Sending the body through go-smtp's DataCommand costs a fifth of the relay's CPU at 100 KB messages: its
// textproto DotWriter handles one byte at a time. Stored bodies are already CRLF text (the inbound filter refuses
// or normalizes bare CR and LF; DSNs are built with CRLF), so the body can be dot-stuffed a line at a time and
// written straight to the connection. Only the final line break goes through the DotWriter, so that it ends in
// the state where its Close writes exactly ".\r\n" (from its initial state it would add an empty line) and
// reads the reply as before.

// dotStuffer writes RFC 5321 4.5.2 transparent text: a '.' at the start of a line is doubled. It holds back a
// trailing "\r\n" (or "\r") so that finish can hand the last line break to the DotWriter.
type dotStuffer struct {
	bw   *bufio.Writer
	bol  bool   // the next byte starts a line
	held []byte // the stream's last bytes, not yet written: "", "\r" or "\r\n"
}

func newDotStuffer(conn io.Writer) *dotStuffer {
	return &dotStuffer{bw: bufio.NewWriterSize(conn, 64<<10), bol: true}
}

func (d *dotStuffer) Write(p []byte) (int, error) {
	data := p
	if len(d.held) > 0 {
		data = append(d.held, p...)
		d.held = nil
	}
	hold := 0
	switch {
	case bytes.HasSuffix(data, []byte("\r\n")):
		hold = 2
	case bytes.HasSuffix(data, []byte("\r")):
		hold = 1
	}
	if err := d.stuff(data[:len(data)-hold]); err != nil {
		return 0, err
	}
	d.held = append([]byte(nil), data[len(data)-hold:]...)
	return len(p), nil
}

func (d *dotStuffer) stuff(b []byte) error {
	for len(b) > 0 {
		if d.bol && b[0] == '.' {
			if err := d.bw.WriteByte('.'); err != nil {
				return err
			}
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			_, err := d.bw.Write(b)
			d.bol = false
			return err
		}
		if _, err := d.bw.Write(b[:i+1]); err != nil {
			return err
		}
		d.bol = true
		b = b[i+1:]
	}
	return nil
}

// finish flushes the stuffed text to the connection and writes the final line break through dot (go-smtp's
// DataCommand), whose Close then sends ".\r\n". A body without a final line break gets one, as the DotWriter
// would have added.
func (d *dotStuffer) finish(dot io.Writer) error {
	if err := d.bw.Flush(); err != nil {
		return err
	}
	_, err := dot.Write([]byte("\r\n"))
	return err
}
