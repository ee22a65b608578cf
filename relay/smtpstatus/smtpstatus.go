// Package smtpstatus holds SMTP replies (basic code, enhanced code, text) and the error type that carries the
// reply it becomes. Whether a reply is temporary or permanent is derived from the basic code, in one place.
// Inbound code turns every error into a go-smtp reply with ToSMTP; outbound code keeps the remote's words.
package smtpstatus

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Enhanced is an RFC 3463 enhanced status code: class.subject.detail.
type Enhanced [3]int

func (e Enhanced) String() string {
	if e == (Enhanced{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// ParseEnhanced parses "4.7.1"; ok is false for anything else.
func ParseEnhanced(s string) (Enhanced, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Enhanced{}, false
	}
	var e Enhanced
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 {
			return Enhanced{}, false
		}
		e[i] = n
	}
	if e[0] != 2 && e[0] != 4 && e[0] != 5 {
		return Enhanced{}, false
	}
	return e, true
}

// Status is one SMTP reply.
type Status struct {
	Code     int      // 451
	Enhanced Enhanced // {4,3,0}; its class agrees with Code for 2xx/4xx/5xx (see New)
	Text     string   // safe to show to the peer
}

// New builds a Status and panics when the enhanced class disagrees with the basic code: named statuses are
// package-level values, so a mismatch is a programming error caught by the first test that loads the package.
func New(code int, enhanced Enhanced, text string) Status {
	if enhanced != (Enhanced{}) && enhanced[0] != code/100 {
		panic(fmt.Sprintf("smtpstatus: enhanced code %s disagrees with %d", enhanced, code))
	}
	return Status{Code: code, Enhanced: enhanced, Text: text}
}

// Temporary reports a 4xx reply.
func (s Status) Temporary() bool { return s.Code/100 == 4 }

// Permanent reports a 5xx reply.
func (s Status) Permanent() bool { return s.Code/100 == 5 }

// String renders the reply as on the wire (one line): "451 4.3.0 text". A status of our own making that no
// peer sent (Code 0, e.g. "connection refused") starts with its enhanced code.
func (s Status) String() string {
	var parts []string
	if s.Code != 0 {
		parts = append(parts, strconv.Itoa(s.Code))
	}
	if e := s.Enhanced.String(); e != "" {
		parts = append(parts, e)
	}
	if s.Text != "" {
		parts = append(parts, s.Text)
	}
	return strings.Join(parts, " ")
}

// With returns a copy with another text.
func (s Status) With(format string, args ...any) Status {
	s.Text = fmt.Sprintf(format, args...)
	return s
}

// Named inbound replies (docs/exchange.md lists what a client sees). The number is in the comment so grep finds it.
var (
	Queued             = New(250, Enhanced{2, 0, 0}, "Ok: queued")                                // 250 2.0.0
	RelayDenied        = New(554, Enhanced{5, 7, 1}, "Relay access denied")                       // 554 5.7.1
	MessageTooBig      = New(552, Enhanced{5, 3, 4}, "Error: message exceeds fixed maximum size") // 552 5.3.4
	TooManyRecipients  = New(452, Enhanced{4, 5, 3}, "Error: too many recipients")                // 452 4.5.3
	StorageFailure     = New(451, Enhanced{4, 3, 0}, "Error: queue file write error")             // 451 4.3.0
	BareNewline        = New(550, Enhanced{5, 6, 0}, "Error: bare <CR> or <LF> received; use <CR><LF> line endings")
	AuthFailed         = New(535, Enhanced{5, 7, 8}, "Error: authentication failed") // 535 5.7.8
	AuthRequired       = New(530, Enhanced{5, 7, 0}, "Authentication required")      // 530 5.7.0
	TLSRequiredForAuth = New(538, Enhanced{5, 7, 11}, "Encryption required for requested authentication mechanism")
	BadAddress         = New(501, Enhanced{5, 1, 3}, "Bad address syntax")        // 501 5.1.3
	BadSender          = New(501, Enhanced{5, 1, 7}, "Bad sender address syntax") // 501 5.1.7
	ShuttingDown       = New(421, Enhanced{4, 3, 2}, "Service shutting down, try again later")
	TooManyConnections = New(421, Enhanced{4, 7, 0}, "Too many connections, try again later")
	IdleTimeout        = New(421, Enhanced{4, 4, 2}, "Error: timeout exceeded")
)

// Error is a failure that knows the reply it becomes (inbound) or the reply the remote gave (outbound).
type Error struct {
	Status
	Op  string // "queue.commit", "dial", "RCPT", "dns.mx"
	Err error  // the cause; logged, never sent to a client
	Fix string // one sentence for the admin, when there is one
}

// Errorf wraps cause into an Error with status s.
func Errorf(s Status, op string, cause error) *Error { return &Error{Status: s, Op: op, Err: cause} }

func (e *Error) Error() string {
	msg := e.Status.String()
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// LogValue puts code, enhanced code, op, cause and fix in the log line without the caller repeating them.
func (e *Error) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int("code", e.Code), slog.String("dsn", e.Enhanced.String()), slog.String("text", e.Text)}
	if e.Op != "" {
		attrs = append(attrs, slog.String("op", e.Op))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("cause", e.Err.Error()))
	}
	if e.Fix != "" {
		attrs = append(attrs, slog.String("fix", e.Fix))
	}
	return slog.GroupValue(attrs...)
}

// ToSMTP is the one boundary between our errors and go-smtp's replies for every inbound Session method. An
// *Error becomes its status; a *smtp.SMTPError passes unchanged; anything else becomes 451 4.3.0 with a
// generic text, so a bare error never reaches go-smtp (which would send our error text with 451 or 554).
func ToSMTP(err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return se.Status.SMTPError()
	}
	var ge *smtp.SMTPError
	if errors.As(err, &ge) {
		return ge
	}
	return StorageFailure.With("Error: internal error, try again later").SMTPError()
}

// SMTPError converts a status into go-smtp's reply type.
func (s Status) SMTPError() *smtp.SMTPError {
	ec := smtp.EnhancedCode(s.Enhanced)
	if s.Enhanced == (Enhanced{}) {
		ec = smtp.NoEnhancedCode
	}
	return &smtp.SMTPError{Code: s.Code, EnhancedCode: ec, Message: s.Text}
}
