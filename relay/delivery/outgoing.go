package delivery

import (
	"bytes"
	"errors"
	"io"

	"ptrelay/queue"
	"ptrelay/relay/dkim"
)

// The message on its way out. What one attempt sends is built once the hop and the candidate that took the
// session are known: the header fields this attempt puts in front (a DKIM signature, signed per attempt with
// the route known, comes here), then the stored message byte for byte, straight through the dot-stuffer. SIZE
// is announced from what is sent, not from what is stored.

// outgoing is one message as one attempt sends it.
type outgoing struct {
	prepend []byte // complete header fields, each ending in CRLF; nil when this attempt adds none
	stored  int64  // the stored message's size
	// open opens the stored message; errors reading it are readErr, so they are not blamed on the peer.
	open func() (io.ReadCloser, error)
}

// size is what DATA will send (before dot-stuffing), for MAIL's SIZE=.
func (o *outgoing) size() int64 { return int64(len(o.prepend)) + o.stored }

// reader opens what DATA sends: the prepended fields, then the stored message.
func (o *outgoing) reader() (io.ReadCloser, error) {
	rc, err := o.open()
	if err != nil || len(o.prepend) == 0 {
		return rc, err
	}
	return prepended{Reader: io.MultiReader(bytes.NewReader(o.prepend), rc), Closer: rc}, nil
}

type prepended struct {
	io.Reader
	io.Closer
}

// A prepender returns header fields to put in front of a message for one attempt through candidate c (nil for
// none). It may read the stored message through open (a signer hashes the body); it must not change it.
type prepender interface {
	prepend(m *queue.Message, c *candidate, open func() (io.ReadCloser, error)) ([]byte, error)
}

// prepare builds the outgoing form of m for an attempt through c: every prepender's fields, in order, in front
// of the stored message. An error is the attempt's, like an unreadable stored message (stQueue).
func (s *Scheduler) prepare(m *queue.Message, c *candidate) (*outgoing, error) {
	out := &outgoing{stored: m.Size, open: s.bodyOpener(m.ID)}
	for _, p := range s.prependers {
		fields, err := p.prepend(m, c, out.open)
		if err != nil {
			return nil, err
		}
		out.prepend = append(out.prepend, fields...)
	}
	return out, nil
}

func (s *Scheduler) bodyOpener(id string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, err := s.store.Body(id)
		if err != nil {
			return nil, err
		}
		return bodyReader{rc}, nil
	}
}

// readErr marks an error from reading our own stored message, so it is not blamed on the peer.
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }
func (e readErr) Unwrap() error { return e.err }

// bodyReader tags read errors from the store.
type bodyReader struct{ rc io.ReadCloser }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}
func (b bodyReader) Close() error { return b.rc.Close() }

// dkimPrepender signs the message of each attempt with the keys of the moment (Settings.DKIM: a reload's new
// keys apply to mail already queued), once the route is known. It runs on the session's goroutine, so the
// signatures of many sessions are made in parallel (an RSA-2048 signature costs about a millisecond of CPU),
// never on the scheduler loop.
type dkimPrepender struct{ s *Scheduler }

func (p dkimPrepender) prepend(m *queue.Message, c *candidate, open func() (io.ReadCloser, error)) ([]byte, error) {
	signer := p.s.cfg.Load().DKIM
	if signer == nil {
		return nil, nil
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	fields, d, err := signer.Sign(rc, dkim.SignOptions{SafeHeaders: safeHeaders(c)})
	if err != nil {
		var re readErr
		if !errors.As(err, &re) {
			p.s.log.Error("DKIM signing failed; the attempt is deferred", "id", m.ID, "err", err)
		}
		return nil, err
	}
	p.s.log.Debug("dkim", "id", m.ID, "relay", c.host, "result", d.String(), "reason", string(d.Reason))
	if p.s.obs.OnDKIM != nil {
		p.s.obs.OnDKIM(d.Signed(), string(d.Reason))
	}
	return fields, nil
}

// safeHeaders is the route's dkim_safe_headers: leave Message-ID and Date out of h= for a smart host that
// rewrites them (Amazon SES). Direct delivery never asks for it.
func safeHeaders(c *candidate) bool {
	return c.smarthost != nil && c.smarthost.DKIMSafeHeaders
}
