package smtpstatus

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/emersion/go-smtp"
)

// Replies received from remote servers (outbound) are parsed here and nowhere else, whichever reader got them:
// go-smtp's client (MAIL, RCPT, DATA, AUTH...) or net/textproto directly (a reply read outside go-smtp, such as
// the one to STARTTLS). Both end in ParseReply, so a reply reads the same at every stage of the dialogue.

// ParseReply reads one reply from its basic code and its text as net/textproto returns it: the text of each line
// without the code and separator ("550-", "550 "), lines joined by "\n".
//
// The enhanced code (RFC 3463) is taken from the start of the first line when it is well formed and its class
// agrees with the basic code; RFC 2034 repeats it at the start of every line, and those repetitions are removed
// as go-smtp does. An enhanced code that is malformed or of another class stays in the text, where a reader
// sees what the server sent. The lines are joined by spaces: a Status is one line (logs, history, DSNs).
func ParseReply(code int, text string) Status {
	st := Status{Code: code}
	lines := strings.Split(text, "\n")
	first, rest, _ := strings.Cut(lines[0], " ")
	if e, ok := ParseEnhanced(first); ok && e[0] == code/100 {
		st.Enhanced = e
		lines[0] = rest
		for i := 1; i < len(lines); i++ {
			lines[i] = strings.TrimPrefix(lines[i], first+" ")
		}
	}
	st.Text = strings.Join(lines, " ")
	return st
}

// FromSMTPError converts a reply received by go-smtp's client into a Status, keeping the remote's words. go-smtp
// has already split off an enhanced code (without checking its range or class) and removed its repetitions; the
// reply is put back into its textproto form and read by ParseReply, so that both readers give the same Status.
func FromSMTPError(e *smtp.SMTPError) Status {
	text := e.Message
	if e.EnhancedCode != smtp.NoEnhancedCode && e.EnhancedCode != smtp.EnhancedCodeNotSet {
		ec := fmt.Sprintf("%d.%d.%d", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
		text = ec + " " + strings.ReplaceAll(text, "\n", "\n"+ec+" ")
	}
	return ParseReply(e.Code, text)
}

// FromError finds the remote reply err carries: go-smtp's *smtp.SMTPError or net/textproto's *textproto.Error,
// possibly wrapped. ok is false for an error no server said (a network failure, a timeout, a TLS error).
func FromError(err error) (Status, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return FromSMTPError(se), true
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return ParseReply(te.Code, te.Msg), true
	}
	return Status{}, false
}

// IsReply reports whether err is a reply from the remote server (see FromError): the session is still in step,
// unlike after a network error.
func IsReply(err error) bool {
	_, ok := FromError(err)
	return ok
}
