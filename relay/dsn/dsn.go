// Package dsn builds RFC 3464 delivery status notifications: a multipart/report (RFC 6522, formerly 3462)
// with a readable explanation, the message/delivery-status part and the original message's headers
// (text/rfc822-headers). DSN extensions of SMTP are RFC 3461.
//
// It takes plain data (Report) and returns the bytes of a whole RFC 5322 message. It knows nothing of the
// queue, delivery or SMTP sessions: deciding whether a DSN is due, and to whom, is the delivery side's job.
// RFC 6533 (internationalized DSNs, message/global-delivery-status) is out of scope; see Build for how
// non-ASCII input is kept 7-bit.
package dsn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"ptrelay/relay/smtpstatus"
)

// Kind is what a report announces.
type Kind int

const (
	Failed  Kind = iota + 1 // delivery failed for good: "Undelivered Mail Returned to Sender"
	Delayed                 // not delivered yet, still being retried: a warning
)

// Report is everything one DSN says.
type Report struct {
	ReportingMTA    string    // our hostname
	Kind            Kind      // Failed | Delayed
	Sender          string    // envelope sender of the original message: the DSN's To
	EnvID           string    // the ENVID given with MAIL FROM, if any
	Arrival         time.Time // when we accepted the original message
	Now             time.Time // the DSN's Date
	MessageID       string    // our queue ID of the original message, named in the text
	Recipients      []RecipientStatus
	OriginalHeaders []byte // the header section of the original message
	Postmaster      string // the From address; default MAILER-DAEMON@ReportingMTA
}

// RecipientStatus is one recipient's part of a report.
type RecipientStatus struct {
	Recipient  string // envelope recipient
	ORcpt      string // DSN ORCPT, "rfc822;addr" or a bare address (then taken as rfc822)
	Action     string // failed | delayed (also delivered | relayed | expanded); default from Kind
	Status     string // RFC 3463 code, "5.1.1"; default 5.0.0 (Failed) or 4.0.0 (Delayed)
	RemoteMTA  string // host name of the server that answered, optional
	Diagnostic string // the remote's reply, "550 5.1.1 user unknown"; or, when there was no reply,
	// our own description ("connect to mx.example.org: connection refused"), written as type X-ptrelay; optional
	LastAttempt    time.Time // optional
	WillRetryUntil time.Time // for delayed: when we give up
	Fix            string    // one sentence in ptrelay's words: what the sender should do; optional
}

// ErrNullSender is returned for a report addressed to the null sender: a message from <> never causes a DSN
// (RFC 3461 6.2, RFC 5321 6.1), which is what stops bounce loops.
var ErrNullSender = errors.New("dsn: no report is sent to the null sender")

// Build returns the whole DSN message with CRLF line endings, every line at most 998 octets.
//
// Output is 7-bit, with one exception: a non-ASCII sender address is written as is in To (RFC 6532), since
// such a sender can only be reached over SMTPUTF8 anyway. Elsewhere non-ASCII addresses use the RFC 6533
// "utf-8" address type with \x{HEX} escapes in the delivery-status part and in the text, and other non-ASCII
// text (diagnostics, ENVID, Fix) has each non-ASCII character replaced by '?'. Original headers that are not
// 7-bit, or have over-long lines, are sent quoted-printable.
//
// Build is deterministic: the Message-ID and the MIME boundary are derived from the report, so the same
// report gives the same bytes (golden tests, and a retried build yields the same message).
func Build(r Report) ([]byte, error) {
	r, err := r.normalized()
	if err != nil {
		return nil, err
	}
	text := explanation(r)
	status := deliveryStatus(r)
	headers, cte := originalHeaders(r.OriginalHeaders)
	seed := r.seed()
	boundary := "=_ptrelay_" + seed[:24]
	for i := 0; containsAny(boundary, text, status, headers); i++ {
		boundary = "=_ptrelay_" + seed[:24] + "_" + strconv.Itoa(i) // never happens with hex, but cheap to rule out
	}

	var b bytes.Buffer
	postmaster := r.Postmaster
	if postmaster == "" {
		postmaster = "MAILER-DAEMON@" + r.ReportingMTA
	}
	b.WriteString("From: Mail Delivery System <" + postmaster + ">\r\n")
	b.WriteString("To: <" + r.Sender + ">\r\n")
	b.WriteString("Subject: " + subject(r.Kind) + "\r\n")
	b.WriteString("Date: " + date(r.Now) + "\r\n")
	b.WriteString("Message-ID: <" + seed[24:48] + ".dsn@" + r.ReportingMTA + ">\r\n")
	b.WriteString("Auto-Submitted: auto-replied\r\n") // RFC 3834: no vacation replies to this
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n")
	b.WriteString("\r\nThis is a MIME-encapsulated message (RFC 3464 delivery status notification).\r\n")

	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Description: Notification\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
	b.WriteString(text)

	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Description: Delivery report\r\n")
	b.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	b.WriteString(status)

	if len(headers) > 0 {
		b.WriteString("\r\n--" + boundary + "\r\n")
		b.WriteString("Content-Description: Headers of the original message\r\n")
		b.WriteString("Content-Type: text/rfc822-headers\r\n")
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n\r\n")
		b.WriteString(headers)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// normalized checks r and fills the defaults: Action and Status from Kind.
func (r Report) normalized() (Report, error) {
	switch {
	case r.Sender == "":
		return r, ErrNullSender
	case r.ReportingMTA == "" || !isPrintableASCII(r.ReportingMTA) || strings.ContainsAny(r.ReportingMTA, " <>;"):
		return r, fmt.Errorf("dsn: reporting MTA %q: want our host name", r.ReportingMTA)
	case r.Kind != Failed && r.Kind != Delayed:
		return r, fmt.Errorf("dsn: unknown report kind %d", r.Kind)
	case len(r.Recipients) == 0:
		return r, errors.New("dsn: a report needs at least one recipient")
	case hasControl(r.Sender) || strings.ContainsAny(r.Sender, "<> "):
		return r, fmt.Errorf("dsn: sender %q is not an address", r.Sender)
	case r.Postmaster != "" && (!isPrintableASCII(r.Postmaster) || strings.ContainsAny(r.Postmaster, "<>")):
		return r, fmt.Errorf("dsn: postmaster %q is not an ASCII address", r.Postmaster)
	}
	rcpts := make([]RecipientStatus, len(r.Recipients))
	for i, rs := range r.Recipients {
		if rs.Recipient == "" || hasControl(rs.Recipient) {
			return r, fmt.Errorf("dsn: recipient %d: %q is not an address", i, rs.Recipient)
		}
		if rs.Action == "" {
			rs.Action = map[Kind]string{Failed: "failed", Delayed: "delayed"}[r.Kind]
		}
		switch rs.Action {
		case "failed", "delayed", "delivered", "relayed", "expanded": // RFC 3464 2.3.3
		default:
			return r, fmt.Errorf("dsn: recipient %s: action %q is not an RFC 3464 action", rs.Recipient, rs.Action)
		}
		if rs.Status == "" {
			rs.Status = map[Kind]string{Failed: "5.0.0", Delayed: "4.0.0"}[r.Kind]
		}
		if _, ok := smtpstatus.ParseEnhanced(rs.Status); !ok {
			return r, fmt.Errorf("dsn: recipient %s: status %q is not an RFC 3463 code", rs.Recipient, rs.Status)
		}
		rcpts[i] = rs
	}
	r.Recipients = rcpts
	return r, nil
}

// seed is a hex digest of what makes this report unique (64 hex digits).
func (r Report) seed() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00%s\x00%d\x00%s\x00", r.ReportingMTA, r.Kind, r.MessageID, r.Sender,
		r.Now.UnixNano(), r.EnvID)
	for _, rs := range r.Recipients {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", rs.Recipient, rs.Status, rs.Diagnostic)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func subject(k Kind) string {
	if k == Delayed {
		return "Delayed Mail (still being retried)"
	}
	return "Undelivered Mail Returned to Sender"
}

// date formats a time as RFC 5322 3.3 wants it.
func date(t time.Time) string { return t.Format(time.RFC1123Z) }

func containsAny(needle string, hay ...string) bool {
	for _, h := range hay {
		if strings.Contains(h, needle) {
			return true
		}
	}
	return false
}
