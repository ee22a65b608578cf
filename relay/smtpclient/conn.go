package smtpclient

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineConn puts a deadline on every Read and Write. go-smtp sets a deadline around each command but clears
// it after each reply, DATA's 354 included (go-smtp v0.25.1, Client.cmd), so the body is written with none and a receiver that
// stops reading would block us forever. When go-smtp asks for a deadline (a reply wait) it is honoured; otherwise
// each operation gets now + timeout, which bounds an idle peer without capping a long transfer that progresses.
// It sits under tls.Client, so TLS records get the same treatment.
type deadlineConn struct {
	net.Conn
	timeout time.Duration

	mu        sync.Mutex
	readWant  time.Time
	writeWant time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readWant, c.writeWant = t, t
	c.mu.Unlock()
	return nil
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readWant = t
	c.mu.Unlock()
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeWant = t
	c.mu.Unlock()
	return nil
}

func (c *deadlineConn) pick(want time.Time) time.Time {
	own := time.Now().Add(c.timeout)
	if want.IsZero() || want.After(own.Add(c.timeout)) {
		// A requested deadline far beyond ours (go-smtp's 12-minute submission wait with our short timeout)
		// is trimmed to two of our timeouts: the caller chose the timeout for this relay.
		if want.IsZero() {
			return own
		}
		return own.Add(c.timeout)
	}
	return want
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	d := c.pick(c.readWant)
	c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	d := c.pick(c.writeWant)
	c.mu.Unlock()
	if err := c.Conn.SetWriteDeadline(d); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// greetedConn gives go-smtp's client, after STARTTLS, the greeting it waits for before its first EHLO: the
// server sent its real greeting before STARTTLS and sends none after it (RFC 3207 4.2), and go-smtp has no way
// to start a client past the greeting. The client's Hello then sends the EHLO that RFC 3207 4.2 requires on
// the encrypted session.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// writeWatch records whether go-smtp's client has written anything: a failed Hello that wrote nothing failed at
// the greeting, one that wrote failed at EHLO.
type writeWatch struct {
	net.Conn
	wrote atomic.Bool
}

func (w *writeWatch) Write(p []byte) (int, error) {
	w.wrote.Store(true)
	return w.Conn.Write(p)
}
