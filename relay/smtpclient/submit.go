package smtpclient

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/emersion/go-smtp"

	"ptrelay/relay/smtpstatus"
)

// Submission is one message handed to a server in one session, as `ptrelay send` does to test a relay.
type Submission struct {
	// Spec says how to open the session; its Addr is ignored: Addrs and Port say where.
	Spec  Spec
	Addrs []netip.Addr // the server's addresses, tried in order until one opens a session
	Port  string
	// Credentials log in after EHLO (and STARTTLS) when set.
	Credentials *Credentials
	From        string
	To          []string
	Message     []byte // CRLF text
}

// Submit opens a session with the first address that answers, logs in when asked, sends the message in one
// transaction and quits. It returns the reply to the final dot. Every failure is returned: a session that
// could not be opened as Spec.TLS requires is not retried in plaintext.
func Submit(ctx context.Context, sub Submission) (smtpstatus.Status, error) {
	if len(sub.Addrs) == 0 {
		return smtpstatus.Status{}, errors.New("no address to connect to")
	}
	var ss *Session
	var errs []error
	for _, a := range sub.Addrs {
		spec := sub.Spec
		spec.Addr = net.JoinHostPort(a.Unmap().String(), sub.Port)
		var err error
		ss, err = Dial(ctx, spec)
		if err == nil {
			break
		}
		errs = append(errs, err)
		var se *StepError
		if !errors.As(err, &se) || se.Stage != StageConnect {
			break // the server answered: another of its addresses would say the same
		}
	}
	if ss == nil {
		return smtpstatus.Status{}, errors.Join(errs...)
	}
	defer ss.Close(false)
	if sub.Credentials != nil {
		if err := ss.Auth(*sub.Credentials); err != nil {
			return smtpstatus.Status{}, err
		}
	}
	if err := ss.Mail(sub.From, &smtp.MailOptions{Size: int64(len(sub.Message))}); err != nil {
		return smtpstatus.Status{}, err
	}
	for _, to := range sub.To {
		if err := ss.Rcpt(to, nil); err != nil {
			return smtpstatus.Status{}, err
		}
	}
	reply, err := ss.Data(bytes.NewReader(sub.Message))
	if err != nil {
		return smtpstatus.Status{}, err
	}
	_ = ss.c.Quit() // the message is accepted; a failed QUIT changes nothing
	return reply, nil
}
