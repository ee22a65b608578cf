package inbound

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ptrelay/relay/smtpstatus"
)

// conn wraps every accepted TCP connection, below TLS. It owns three things go-smtp does not do:
//   - an idle deadline per Read: go-smtp's ReadTimeout is set once per command line, so it caps a whole DATA
//     transfer and, once it fires mid-body, go-smtp reads the rest of the body as commands. Setting the deadline
//     on every Read bounds idleness instead of duration. A timeout is sticky: every later Read fails at once, so
//     a client that went quiet mid-DATA is dropped without another wait and nothing is queued.
//   - closing after too many failed AUTHs: Read returns EOF and go-smtp hangs up after its current reply.
//   - the per-connection facts sessions need (id, client address, AUTH failures, TLS handshake diagnosis),
//     since go-smtp recreates the Session after STARTTLS.
type conn struct {
	net.Conn
	srv    *Server
	id     string
	remote netip.Addr
	log    *slog.Logger
	idle   time.Duration

	tap   *tap
	wrote atomic.Bool // set by Write, consumed by the tap to tell replies from input

	mu      sync.Mutex
	readErr error // sticky idle timeout
	hangup  error // set by closeAfterReply: what every later Read returns

	authFailures atomic.Int32
	queued       atomic.Int32 // messages accepted on this connection, for the disconnect line
	denied       atomic.Int32 // recipients refused by the relay rule
	// inputEnded: a Read met EOF or a connection error. go-smtp reads a BDAT chunk through an io.LimitReader,
	// so a chunk cut short by the client's EOF looks complete to it; Data refuses to commit once this is set.
	inputEnded atomic.Bool

	// rbuf[rpos:rend] is input read from the socket and not yet handed to go-smtp (Read; one goroutine).
	rbuf       []byte
	rpos, rend int
	// inTxn: a mail transaction is open (MAIL accepted, not yet reset). draining: the server is shutting down;
	// a connection between transactions is then ended at its next read (see Server.Shutdown).
	inTxn    atomic.Bool
	draining atomic.Bool

	// TLS handshake diagnosis: hello is set when a ClientHello arrived, tlsDone when a handshake completed.
	hello     atomic.Pointer[tls.ClientHelloInfo]
	helloHint atomic.Pointer[string]
	tlsDone   atomic.Bool
	tlsLogged atomic.Bool

	closeOnce sync.Once
}

var sessionIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newSessionID returns 8 characters: short enough to read out on the phone, random enough not to repeat in a
// day's logs.
func newSessionID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return sessionIDEncoding.EncodeToString(b[:])
}

// readBufSize is how much one read from the socket may take. go-smtp reads through a 4 KiB bufio.Reader, which
// made a 100 KB message cost about 25 read syscalls (a sixth of the relay's CPU); this buffer sits below TLS.
const readBufSize = 64 << 10

// Read serves go-smtp (or the TLS layer above) from a per-connection buffer, filled by readSocket.
func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	hangup := c.hangup
	c.mu.Unlock()
	if hangup != nil {
		return 0, hangup // nothing more from this client, even what it already sent
	}
	if c.rpos < c.rend {
		n := copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += n
		return n, nil
	}
	if len(p) >= readBufSize {
		return c.readSocket(p)
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, readBufSize)
	}
	n, err := c.readSocket(c.rbuf)
	m := copy(p, c.rbuf[:n])
	c.rpos, c.rend = m, n
	if m < n {
		// The rest is served first; a connection error comes back from the socket at the next fill.
		return m, nil
	}
	return m, err
}

// readSocket is one read from the connection, with the idle deadline set just before it.
func (c *conn) readSocket(p []byte) (int, error) {
	c.mu.Lock()
	err, hangup := c.readErr, c.hangup
	c.mu.Unlock()
	if err != nil {
		return 0, c.timeoutErr()
	}
	if hangup != nil {
		return 0, hangup
	}
	if c.idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	c.interruptIfDraining()
	n, err := c.Conn.Read(p)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			if c.draining.Load() {
				c.log.Info("shutting down: closing the connection between transactions")
			} else {
				c.log.Info("client idle too long; dropping the connection", "idle_timeout", c.idle.String())
				c.srv.refused(RefusedIdle)
			}
			return n, c.timeoutErr()
		}
		c.inputEnded.Store(true)
	}
	return n, err
}

// timeoutErr is what a timed-out Read reports: a 421 *smtp.SMTPError naming the session, "421 4.3.2 Service
// shutting down" when the server is stopping and "421 4.4.2 Error: timeout exceeded" when the client went quiet.
// go-smtp sends it as its last reply (it answers a read error that is an SMTPError with the error itself),
// where its own would be "421 4.4.2 Idle timeout" in both cases, without the session; a failed DATA or BDAT
// read makes Data return it (see dataError), where go-smtp would answer a failed BDAT chunk with a permanent
// "554 5.0.0 ... i/o timeout", which would make the sender bounce a message it should retry.
func (c *conn) timeoutErr() error {
	st := smtpstatus.IdleTimeout
	if c.draining.Load() {
		st = smtpstatus.ShuttingDown
	}
	return withSession(st, c.id).SMTPError()
}

// Write watches for the TLS alert the server sends when a handshake fails, since go-smtp swallows the
// handshake error (it answers "550 Handshake error" and goes on in clear text).
func (c *conn) Write(p []byte) (int, error) {
	if c.hello.Load() != nil && !c.tlsDone.Load() && len(p) >= 7 && p[0] == 21 && p[1] == 3 {
		c.logHandshakeFailure("we sent alert " + alertName(p[6]))
	}
	c.wrote.Store(true)
	return c.Conn.Write(p)
}

// interruptIfDraining ends a read between transactions during a shutdown: the read times out at once and
// go-smtp answers 421 and hangs up. Shutdown calls it too, for reads already blocked; either order works
// because both set the deadline after the flag is visible.
func (c *conn) interruptIfDraining() {
	if c.draining.Load() && !c.inTxn.Load() {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

// closeAfterReply makes every later Read return last: go-smtp finishes writing the current reply, then, for
// io.EOF, hangs up without a word, or, for an *smtp.SMTPError (a 421: RFC 5321 3.8 allows no other before a
// close), sends it and hangs up.
func (c *conn) closeAfterReply(last error) {
	c.mu.Lock()
	c.hangup = last
	c.mu.Unlock()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.hello.Load() != nil && !c.tlsDone.Load() {
			c.logHandshakeFailure("client closed the connection during the handshake (it may have rejected our certificate)")
		}
		c.srv.connClosed(c)
	})
	return err
}

func (c *conn) logHandshakeFailure(reason string) {
	if !c.tlsLogged.CompareAndSwap(false, true) {
		return
	}
	attrs := []any{"client", c.RemoteAddr().String(), "reason", reason}
	if h := c.hello.Load(); h != nil {
		var vs []string
		for _, v := range h.SupportedVersions {
			vs = append(vs, tlsVersionName(v))
		}
		attrs = append(attrs, "client_versions", strings.Join(vs, ","))
	}
	if hint := c.helloHint.Load(); hint != nil && *hint != "" {
		attrs = append(attrs, "hint", *hint)
	}
	c.log.Warn("STARTTLS handshake failed", attrs...)
	c.srv.refused(RefusedTLS)
}

// alertName names the TLS alerts a failed server handshake sends (RFC 8446 6).
func alertName(d byte) string {
	switch d {
	case 40:
		return "handshake_failure (no cipher suite in common)"
	case 70:
		return "protocol_version (TLS version refused)"
	case 71:
		return "insufficient_security"
	case 42, 43, 44, 45, 46:
		return "certificate problem"
	case 47:
		return "illegal_parameter"
	case 50:
		return "decode_error"
	case 80:
		return "internal_error"
	case 10:
		return "unexpected_message"
	}
	return "code " + itoa(int(d))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// connOf finds our wrapper under go-smtp's connection, which is a *tls.Conn after STARTTLS.
func connOf(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// oneConn is a net.Listener that yields one connection, then reports itself closed: go-smtp serves
// connections only through Serve, and each of ours gets its own go-smtp server (see Server).
type oneConn struct {
	ch   chan net.Conn
	addr net.Addr
}

func newOneConn(c net.Conn) *oneConn {
	ch := make(chan net.Conn, 1)
	ch <- c
	close(ch)
	return &oneConn{ch: ch, addr: c.LocalAddr()}
}

func (l *oneConn) Accept() (net.Conn, error) {
	if c, ok := <-l.ch; ok {
		return c, nil
	}
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.addr }
