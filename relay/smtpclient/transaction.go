package smtpclient

import (
	"io"

	"github.com/emersion/go-smtp"

	"ptrelay/relay/smtpstatus"
)

// Mail sends MAIL FROM. go-smtp adds BODY=8BITMIME when the server offers 8BITMIME, and SIZE= when it offers SIZE
// and opts.Size is set: callers put there the size of what Data will send.
func (s *Session) Mail(from string, opts *smtp.MailOptions) error { return s.c.Mail(from, opts) }

// Rcpt sends RCPT TO; go-smtp sends opts' DSN parameters only when the server offers DSN.
func (s *Session) Rcpt(to string, opts *smtp.RcptOptions) error { return s.c.Rcpt(to, opts) }

// Reset sends RSET, ending a transaction that will not be finished. It is sent below go-smtp's client, whose
// Reset would make the next command say EHLO again: a session says EHLO once (twice with STARTTLS).
func (s *Session) Reset() error { return command(s.wire, "RSET", 250) }

// Data sends DATA, then msg dot-stuffed (RFC 5321 4.5.2) and the final dot, and returns the reply to the dot.
// msg must be CRLF text, as every stored message is (inbound refuses or normalises bare CR and LF; DSNs are
// built with CRLF). A refused DATA or a refusal after the dot is a reply error (smtpstatus.FromError). An error
// reading msg is returned as it is; like a network error, it leaves the session unusable (a message cut short
// cannot be finished), and the caller closes it.
func (s *Session) Data(msg io.Reader) (smtpstatus.Status, error) {
	w, err := s.c.Data()
	if err != nil {
		return smtpstatus.Status{}, err
	}
	stuffer := newDotStuffer(s.wire)
	if _, err := io.Copy(stuffer, msg); err != nil {
		return smtpstatus.Status{}, err
	}
	if err := stuffer.finish(w); err != nil {
		return smtpstatus.Status{}, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return smtpstatus.Status{}, err
	}
	// StatusText is the reply's text after "250 ": "2.0.0 Ok: queued as X".
	return smtpstatus.ParseReply(250, resp.StatusText), nil
}
