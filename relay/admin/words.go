package admin

import "ptrelay/queue"

// The words of the text renderers, for the other front ends (the web console): what `queue show` prints for a
// reply, a client and the envelope's options, so a page and the CLI describe a message alike.

// ReplyText is an attempt's answer as Postfix shows it: code, enhanced code, text; "(no reply recorded)" when
// the attempt ended without one (a refused connection).
func ReplyText(a queue.Attempt) string { return reply(a) }

// ClientText says who handed the message to ptrelay: address, HELO name, login, session.
func ClientText(env queue.Envelope) string { return client(env) }

// OptionsText lists the envelope's SMTP options (BODY=, SMTPUTF8, RET=, ENVID=).
func OptionsText(env queue.Envelope) string { return options(env) }

// SenderText is the envelope sender, "<>" for the null sender.
func SenderText(from string) string { return sender(from) }

// StateOrder lists the recipient states as an admin reads them: waiting first, then final.
func StateOrder() []queue.State { return append([]queue.State(nil), stateOrder...) }
