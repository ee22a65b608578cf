package dkim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"
)

// maxHeaderBytes bounds the header section read before signing (the inbound header completer's bound too): a
// message whose header section does not end within it is sent unsigned.
const maxHeaderBytes = 256 << 10

// signedFields are the header fields signed when present, each as often as it occurs (RFC 6376 5.4.1's list,
// plus the one-click unsubscribe fields of RFC 8058 that Gmail and Yahoo require of bulk senders).
var signedFields = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "In-Reply-To", "References", "Message-ID", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Reason says why a message goes out unsigned; the words are the metric's reason label.
type Reason string

const (
	ReasonNoKey       Reason = "no_key"       // no [[dkim.keys]] entry for the From: domain
	ReasonNoFrom      Reason = "no_from"      // the message has no From: address
	ReasonFromDomains Reason = "from_domains" // From: addresses of several domains: which one would DMARC use?
	ReasonBadFrom     Reason = "bad_from"     // From: cannot be read as an address
	ReasonBadHeader   Reason = "bad_header"   // no end of the header section within maxHeaderBytes, or it starts with a blank
)

// Reasons lists every Reason, for metrics that start every series at zero.
var Reasons = []Reason{ReasonNoKey, ReasonNoFrom, ReasonFromDomains, ReasonBadFrom, ReasonBadHeader}

// Decision is what the signer does with one message.
type Decision struct {
	Domain string // the From: domain, lower case ("" when there is none)
	Keys   []*Key // the keys that sign it; empty: it goes out unsigned, for Reason
	Reason Reason
	// Own: the From: address is at ptrelay's hostname (its bounces and alert mail), signed with the key of
	// hostname's domain.
	Own bool
}

// Signed reports whether the message is signed.
func (d Decision) Signed() bool { return len(d.Keys) > 0 }

// String says it in an admin's words, for `ptrelay queue show` and the debug log.
func (d Decision) String() string {
	if d.Signed() {
		names := make([]string, len(d.Keys))
		for i, k := range d.Keys {
			names[i] = k.String()
		}
		s := "signed with " + strings.Join(names, " and ")
		if d.Own {
			s += " (ptrelay's own mail: the key of hostname's domain)"
		}
		return s
	}
	return "not signed: " + d.why()
}

// why is the reason of an unsigned decision in words.
func (d Decision) why() string {
	switch d.Reason {
	case ReasonNoKey:
		return "no [[dkim.keys]] entry for " + d.Domain
	case ReasonNoFrom:
		return "the message has no From: address"
	case ReasonFromDomains:
		return "From: holds addresses of several domains"
	case ReasonBadFrom:
		return "From: cannot be read as an address"
	case ReasonBadHeader:
		return "the header section starts with a blank, or does not end in its first 256 KiB"
	}
	return "no key"
}

// Will says it of a message still in the queue, for `ptrelay queue show`: it is signed when it is sent, with
// the keys configured then.
func (d Decision) Will() string {
	if d.Signed() {
		return "will be " + d.String() + " when sent"
	}
	return "will go out unsigned: " + d.why()
}

// header is a message's header section as read for signing.
type header struct {
	raw    []byte   // as read, the empty line that ends it included when there is one
	ended  bool     // an empty line ended it (else the message ended first, or it was too long)
	fields []string // unfolded fields, "Name: value", without CRLF
}

// readHeader reads the header section from br: lines up to and including the first empty line, or to the end
// of the message. bad means no end within maxHeaderBytes (raw then holds what was read), or a first line that
// starts with a blank: fields put in front of it would take it as their continuation.
func readHeader(br *bufio.Reader) (h header, bad bool, err error) {
	if b, err := br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		return h, true, nil
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: keep reading it whole.
			rest, err2 := br.ReadBytes('\n')
			line, err = append(append([]byte(nil), line...), rest...), err2
		}
		h.raw = append(h.raw, line...)
		if len(h.raw) > maxHeaderBytes {
			return h, true, nil
		}
		// One line end, as go-msgauth's reader (net/textproto) takes it: LF, or CR LF.
		text, lf := bytes.CutSuffix(line, []byte("\n"))
		if lf {
			text = bytes.TrimSuffix(text, []byte("\r"))
		}
		if len(text) == 0 && lf {
			h.ended = true
			return h, false, nil
		}
		if len(text) > 0 {
			if (text[0] == ' ' || text[0] == '\t') && len(h.fields) > 0 {
				h.fields[len(h.fields)-1] += " " + string(bytes.TrimLeft(text, " \t"))
			} else {
				h.fields = append(h.fields, string(text))
			}
		}
		if err == io.EOF {
			return h, false, nil
		}
		if err != nil {
			return h, false, err
		}
	}
}

// values returns the values of every field named name (case-insensitive), in order.
func (h *header) values(name string) []string {
	var out []string
	for _, f := range h.fields {
		n, v, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(strings.TrimRight(n, " \t"), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// counts returns how often each field name occurs, by lower-case name.
func (h *header) counts() map[string]int {
	c := map[string]int{}
	for _, f := range h.fields {
		if n, _, ok := strings.Cut(f, ":"); ok {
			c[strings.ToLower(strings.TrimRight(n, " \t"))]++
		}
	}
	return c
}

// FromDomain returns the domain of the From: address of a header section (lower case), and the reason there is
// none: no From:, several domains, or an address that cannot be read. A From: field with several addresses of
// one domain gives that domain. For the fix sentences of a bounce, and for the signer.
func FromDomain(headerSection []byte) (string, Reason) {
	h, _, _ := readHeader(bufio.NewReader(bytes.NewReader(headerSection)))
	return h.fromDomain()
}

func (h *header) fromDomain() (string, Reason) {
	froms := h.values("From")
	if len(froms) == 0 {
		return "", ReasonNoFrom
	}
	var domain string
	for _, v := range froms {
		domains, ok := addressDomains(v)
		if !ok {
			return "", ReasonBadFrom
		}
		for _, d := range domains {
			if domain != "" && d != domain {
				return "", ReasonFromDomains
			}
			domain = d
		}
	}
	if domain == "" {
		return "", ReasonNoFrom
	}
	return domain, ""
}

// addressDomains returns the domains of the addresses of one From: value. net/mail reads RFC 5322 (RFC 2047
// names, groups, comments); what it refuses is read leniently, as receivers' DMARC code does, when it holds
// exactly one address: the part after the last "@" of the last <...>, or of the only word with an "@".
func addressDomains(v string) ([]string, bool) {
	if list, err := mail.ParseAddressList(v); err == nil {
		var out []string
		for _, a := range list {
			if d := domainOf(a.Address); d != "" {
				out = append(out, d)
			} else {
				return nil, false
			}
		}
		return out, true
	}
	addr := ""
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			addr = v[i+1 : i+j]
		}
	} else {
		for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == ';' }) {
			if strings.Contains(w, "@") {
				if addr != "" {
					return nil, false
				}
				addr = w
			}
		}
	}
	d := domainOf(addr)
	return []string{d}, d != ""
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	d := strings.ToLower(strings.TrimSuffix(strings.Trim(addr[i+1:], " \t()\"'"), "."))
	if d == "" || strings.ContainsAny(d, " \t<>@,;:\"()[]\\") {
		return ""
	}
	return d
}

// headerKeys is h= for a header section with the given field counts: every field of signedFields and of
// oversign as often as it occurs, plus one more of each oversign name (RFC 6376 8.15: a field of that name added
// later then breaks the signature). safe leaves Message-ID and Date out altogether, for smart hosts that rewrite
// them (Amazon SES replaces Message-ID).
func headerKeys(counts map[string]int, oversign []string, safe bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string, extra int) {
		l := strings.ToLower(name)
		if seen[l] || safe && (l == "message-id" || l == "date") {
			return
		}
		seen[l] = true
		for range counts[l] + extra {
			out = append(out, name)
		}
	}
	over := map[string]bool{}
	for _, n := range oversign {
		over[strings.ToLower(n)] = true
	}
	for _, n := range signedFields {
		extra := 0
		if over[strings.ToLower(n)] {
			extra = 1
		}
		add(n, extra)
	}
	for _, n := range oversign {
		add(n, 1)
	}
	return out
}
