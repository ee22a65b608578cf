package inbound

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/relay/message"
	"ptrelay/relay/smtpstatus"
)

// Data streams the message (DATA, or the BDAT chunks reassembled by go-smtp) through the bare CR/LF filter and
// the header completer into a queue writer, and answers 250 only after the queue's Commit returned.
//
// go-smtp maps Data's result with a type assertion, not errors.As: every return is a bare *smtp.SMTPError,
// the success reply included (a 250 SMTPError is sent verbatim, which is how the queue ID reaches the client).
//
// On a content or storage failure Data keeps reading to the end of the message before answering, so the
// reply comes once, after the last BDAT chunk, and the session stays in step; go-smtp does the same for DATA.
func (s *session) Data(r io.Reader) error {
	s.srv.dataStarted()
	defer s.srv.dataDone()
	env, rcpts, ok := s.transaction()
	if !ok {
		drain(r)
		return s.reply(smtpstatus.New(503, smtpstatus.Enhanced{5, 5, 1}, "Error: need MAIL and RCPT first"))
	}
	w, err := s.srv.store.newWriter()
	if err != nil {
		drain(r)
		return s.fail(RefusedStorage, smtpstatus.StorageFailure, err)
	}
	defer func() { _ = w.Abort() }() // no-op after Commit

	now := time.Now()
	addrs := make([]string, len(rcpts))
	for i, r := range rcpts {
		addrs[i] = r.Addr
	}
	received := message.ReceivedValue(message.ReceivedParams{
		Helo: s.helo, IP: s.c.remote, Hostname: s.set.hostname, TLS: s.tls != nil, Auth: env.AuthUser != "",
		ID: s.c.id, Recipients: addrs, Now: now,
	})
	hc := message.NewHeaderCompleter(w, message.Trace{Received: received, Hostname: s.set.hostname, Now: now})
	f := message.NewFilter(hc, s.set.bare)
	f.SetMaxLineLength(maxLineLength)
	in := &readCounter{r: r}
	_, err = io.Copy(f, in)
	if err == nil {
		err = f.Close()
	}
	if err == nil && s.set.bare == message.Reject && s.c.tap.dotCR.Load() {
		err = message.ErrBareNewline // hidden from r by go-smtp's dot handling: see tap.go
	}
	if err == nil {
		err = hc.Close()
	}
	if err != nil {
		if in.err == nil {
			drain(r) // the failure was ours (content or storage): consume the rest of the message first
		}
		return s.dataError(err, in.err)
	}
	if s.c.inputEnded.Load() {
		// The last BDAT chunk may be short: go-smtp cannot tell (see conn.inputEnded). The client got no 250,
		// so it still has the message.
		s.log.Info("client connection ended before the end of the message; nothing queued")
		return s.reply(smtpstatus.StorageFailure.With("Error: connection lost during the message transfer"))
	}
	id, err := w.Commit(env, rcpts)
	if err != nil {
		return s.fail(RefusedStorage, smtpstatus.StorageFailure, err)
	}
	s.log.Info("queued", "id", id, "from", "<"+env.From+">", "nrcpt", len(rcpts), "size", in.n, "body", env.BodyType, "auth", env.AuthUser)
	s.c.queued.Add(1)
	if s.srv.hooks.OnAccepted != nil {
		s.srv.hooks.OnAccepted(id, in.n)
	}
	return s.reply(smtpstatus.Queued.With("Ok: queued as %s", id))
}

// dataError turns what stopped the copy into the reply. readErr is set when the client side failed.
func (s *session) dataError(err, readErr error) error {
	var ne net.Error
	var se *smtp.SMTPError
	switch {
	case readErr != nil && errors.Is(readErr, smtp.ErrDataTooLarge):
		s.log.Info("message refused: over smtp.max_message_size", "limit", s.set.maxSize)
		s.srv.refused(RefusedSize)
		return s.reply(smtpstatus.MessageTooBig.With("Error: message exceeds fixed maximum size of %d bytes", s.set.maxSize))
	case readErr != nil && errors.Is(readErr, smtp.ErrDataReset):
		s.log.Info("message transfer aborted by the client; nothing queued")
		return smtp.ErrDataReset
	case readErr != nil && errors.As(readErr, &se) && se.Code == 421: // idle or shutting down: see conn.timeoutErr
		s.log.Info("client went idle during the message, or the server is stopping; nothing queued")
		return se
	case readErr != nil && errors.As(readErr, &ne) && ne.Timeout():
		s.log.Info("client went idle during the message; nothing queued")
		return s.reply(smtpstatus.IdleTimeout)
	case readErr != nil:
		s.log.Info("message transfer failed; nothing queued", "err", readErr)
		return s.reply(smtpstatus.StorageFailure.With("Error: message transfer failed, try again"))
	case errors.Is(err, message.ErrLineTooLong):
		// Permanent, so the sender does not retry for days; the rest of the message was read, so the session
		// goes on.
		s.log.Info("message refused: a line is too long", "limit", maxLineLength)
		s.srv.refused(RefusedSize)
		return s.reply(lineTooLong)
	case errors.Is(err, message.ErrBareNewline):
		s.log.Warn("message refused: bare CR or LF (SMTP smuggling defence; smtp.bare_newlines = \"normalize\" accepts such devices)", "client", s.c.RemoteAddr().String(), "helo", s.helo)
		s.srv.refused(RefusedBareNewline)
		return s.reply(smtpstatus.BareNewline)
	}
	return s.fail(RefusedStorage, smtpstatus.StorageFailure, err)
}

func (s *session) fail(reason string, st smtpstatus.Status, cause error) error {
	s.log.Error("message not queued", "err", smtpstatus.Errorf(st, "queue", cause))
	s.srv.refused(reason)
	return s.reply(st)
}

// readCounter remembers the client-side read error apart from our own write errors, and counts the bytes.
type readCounter struct {
	r   io.Reader
	n   int64
	err error
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// drain consumes the rest of a message; it ends at the end of data, a reset, the size limit or a read error.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
