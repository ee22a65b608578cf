// Package message owns what ptrelay does to the bytes of a message it accepts: the bare CR/LF defence against
// SMTP smuggling (Filter), and the header work done before the message is queued: a prepended Received trace
// field and a Message-ID and Date when the client left them out (HeaderCompleter, ReceivedValue).
//
// It sees only bytes and plain values. It knows nothing of SMTP sessions, the queue or delivery; the inbound
// Data handler chains the pieces: go-smtp's reader -> Filter -> HeaderCompleter -> the queue's writer.
package message
