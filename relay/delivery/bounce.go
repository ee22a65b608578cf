package delivery

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/dkim"
	"ptrelay/relay/dsn"
)

// maxHeaderBytes bounds how much of a stored message is read for a DSN's original headers.
const maxHeaderBytes = 64 << 10

// dsnRcpt is one recipient line of a DSN about to be built.
type dsnRcpt struct {
	Addr, ORcpt string
	Status      string // enhanced code, "5.1.1"
	Diagnostic  string // the remote's reply, or our own description when no server answered
	Relay       string // "host[ip]:port" or ""
	At          time.Time
	Fix         string // what to fix, when the reply says (route.Classify: SPF, DKIM, DMARC, PTR...)
}

// dsnLine describes one recipient's failure or delay for a DSN: the remote's reply becomes the Diagnostic-Code;
// for a failure with no reply (DNS, connection) our description does. The "what to do" sentence is ours for a
// refusal route.Classify knows (refusalFor), else left to the dsn package, which derives it from the status code.
func dsnLine(r *queue.Recipient, a attempt) dsnRcpt {
	st := a.Status
	d := dsnRcpt{Addr: r.Addr, ORcpt: r.ORcpt, Status: st.Enhanced.String(), Relay: a.Relay, At: a.At}
	if st.Code != 0 {
		d.Diagnostic = st.String()
	} else {
		d.Diagnostic = st.Text // dsn writes it as an X-ptrelay diagnostic, in our words
	}
	// The sender's own SPF/DKIM/DMARC (never rerouted) or this host's reputation (rerouting off): the DSN names
	// the record to fix in our words instead of leaving the sender to decode the receiver's.
	d.Fix = refusalFor(a.Route, st).Fix
	if d.Status == "" {
		d.Status = "5.0.0"
		if st.Code/100 == 4 {
			d.Status = "4.0.0"
		}
	}
	return d
}

// wantsDSN applies RFC 3461 NOTIFY to one recipient: an empty list means the default (failure and delay).
func wantsDSN(notify []string, kind string) bool {
	if len(notify) == 0 {
		return true
	}
	for _, n := range notify {
		if strings.EqualFold(n, "NEVER") {
			return false
		}
	}
	return slices.ContainsFunc(notify, func(n string) bool { return strings.EqualFold(n, kind) })
}

// dsnAllowed: never a DSN about a null-sender message (RFC 5321 6.1: bounces of bounces loop), which includes
// every DSN ptrelay generated itself.
func dsnAllowed(m *queue.Message) bool { return m.Envelope.From != "" && !m.Envelope.IsDSN }

// headersOf reads the stored message's header section (up to the blank line) for the DSN's third part.
func (s *Scheduler) headersOf(id string) []byte {
	rc, err := s.store.Body(id)
	if err != nil {
		s.log.Warn("cannot read the headers for a DSN", "id", id, "err", err)
		return nil
	}
	defer rc.Close()
	br := bufio.NewReader(io.LimitReader(rc, maxHeaderBytes))
	var b bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		b.Write(line)
		if err != nil {
			break
		}
	}
	return b.Bytes()
}

// enqueueDSN builds a DSN of kind about m's recipients and queues it in the Update's transaction, from the null
// sender to the envelope sender. A DSN that cannot be built is logged and skipped: the recipients' states must
// still be recorded, or they would stay claimed.
func (s *Scheduler) enqueueDSN(tx *queue.Tx, cfg *Settings, m *queue.Message, kind dsn.Kind, rcpts []dsnRcpt, headers []byte, now time.Time) (string, error) {
	rep := dsn.Report{
		ReportingMTA:    cfg.Hostname,
		Kind:            kind,
		Sender:          m.Envelope.From,
		EnvID:           m.Envelope.EnvID,
		Arrival:         m.Arrival,
		Now:             now,
		MessageID:       m.ID,
		OriginalHeaders: headers,
	}
	for _, r := range rcpts {
		rs := dsn.RecipientStatus{
			Recipient:   r.Addr,
			ORcpt:       r.ORcpt,
			Status:      r.Status,
			RemoteMTA:   hostOf(r.Relay),
			LastAttempt: r.At,
			Diagnostic:  r.Diagnostic,
			Fix:         fixFor(r.Fix, headers, m.Envelope.From),
		}
		if kind == dsn.Delayed {
			rs.Action = "delayed"
			rs.WillRetryUntil = m.Arrival.Add(cfg.Lifetime)
		} else {
			rs.Action = "failed"
		}
		rep.Recipients = append(rep.Recipients, rs)
	}
	body, err := dsn.Build(rep)
	if err != nil {
		return "", err
	}
	return tx.Enqueue(queue.Envelope{From: "", IsDSN: true},
		[]queue.Recipient{{Addr: m.Envelope.From, State: queue.StateQueued}}, body)
}

// fixFor names the message's own domain in a fix sentence written for any sender ("enable DKIM for <sender
// domain>"): the domain of its From: address, which DKIM and DMARC are about, else the envelope sender's.
func fixFor(fix string, headers []byte, envFrom string) string {
	const placeholder = "<sender domain>"
	if !strings.Contains(fix, placeholder) {
		return fix
	}
	d, _ := dkim.FromDomain(headers)
	if d == "" {
		if i := strings.LastIndexByte(envFrom, '@'); i >= 0 {
			d = strings.ToLower(envFrom[i+1:])
		}
	}
	if d == "" {
		return fix
	}
	return strings.ReplaceAll(fix, placeholder, d)
}

// hostOf turns "host[ip]:port" into "host" for Remote-MTA.
func hostOf(relay string) string {
	if i := strings.IndexByte(relay, '['); i > 0 {
		return relay[:i]
	}
	if relay == "none" {
		return ""
	}
	return relay
}
