package delivery

import (
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-smtp"

	"ptrelay/queue"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// rcptResult is the outcome of one recipient in one transaction.
type rcptResult struct {
	Index int // into Message.Recipients
	Addr  string
	decision
	Relay string
}

// txResult is what a transaction did: per-recipient results, and whether the session can carry the next one.
type txResult struct {
	Results []rcptResult
	Broken  bool // the connection is unusable (network error, or we could not finish DATA)
	// NextHost: the whole transaction should move to another MX (4xx to MAIL as the first command of a session).
	NextHost bool
	// NextHostDecision is the failure that made NextHost.
	NextHostDecision decision
	// Stale: a reused session failed at MAIL (closed by the peer, or 421): the results say so, but the
	// transaction deserves one more try on a new session before anything is deferred.
	Stale bool
}

// send runs MAIL, RCPT for each recipient, DATA with the message as prepare builds it for this session (see
// outgoing.go), on an open session. A 452 to some RCPTs after others were accepted is the peer's recipient
// limit, not a failure (RFC 5321 4.5.3.1.10): the rest go in a new transaction right after this one, on the
// same session.
func (ss *session) send(m *queue.Message, rcpts []rcptRef, prepare func() (*outgoing, error), dc txContext) txResult {
	var out txResult
	msg, err := prepare()
	if err != nil {
		d := classify(stQueue, err, where{})
		for _, r := range rcpts {
			out.Results = append(out.Results, rcptResult{Index: r.Index, Addr: r.Addr, decision: d, Relay: ss.Relay()})
		}
		return out
	}
	pending := rcpts
	for round := 0; len(pending) > 0 && round <= len(rcpts); round++ {
		res, retry, stop := ss.sendOnce(m, pending, msg, dc)
		out.Results = append(out.Results, res.Results...)
		if res.Broken || res.NextHost {
			out.Broken, out.NextHost, out.NextHostDecision, out.Stale = res.Broken, res.NextHost, res.NextHostDecision, res.Stale
			return out
		}
		if stop {
			break
		}
		pending = retry
		dc.nextOnMail = false
	}
	return out
}

// rcptRef names one recipient of the message being sent.
type rcptRef struct {
	Index int
	Addr  string
}

// txContext is what the transaction's classification needs to know about where it goes.
type txContext struct {
	route route.Route
	// nextOnMail: a 4xx to MAIL moves the transaction to the hop's next candidate (see where).
	nextOnMail bool
	reroute    bool // routing.reroute applies (route.Policy's Reroute)
}

func (ss *session) sendOnce(m *queue.Message, rcpts []rcptRef, msg *outgoing, tc txContext) (txResult, []rcptRef, bool) {
	var out txResult
	all := func(d decision, list []rcptRef) {
		for _, r := range list {
			out.Results = append(out.Results, rcptResult{Index: r.Index, Addr: r.Addr, decision: d, Relay: ss.Relay()})
		}
	}
	fail := func(st stage, err error, list []rcptRef) {
		d := classify(st, err, where{nextOnMail: tc.nextOnMail})
		if !smtpstatus.IsReply(err) {
			out.Broken = true
		}
		all(d, list)
	}

	opts := &smtp.MailOptions{Size: msg.size()}
	if m.Envelope.SMTPUTF8 {
		if ok, _ := ss.Extension("SMTPUTF8"); !ok {
			all(decision{Outcome: Bounced, Status: ours(stNoUTF8, "the message needs SMTPUTF8 but "+ss.Relay()+" does not offer it")}, rcpts)
			return out, nil, true
		}
		opts.UTF8 = true
	}
	if ret := strings.ToUpper(m.Envelope.Ret); ret == "FULL" || ret == "HDRS" {
		opts.Return = smtp.DSNReturn(ret)
	}
	if isPrintable(m.Envelope.EnvID) {
		opts.EnvelopeID = m.Envelope.EnvID
	}
	if err := ss.Mail(m.Envelope.From, opts); err != nil {
		d := classify(stMail, err, where{nextOnMail: tc.nextOnMail})
		// A 4xx to MAIL that refuses this host's reputation (Yahoo's [TSS04]) goes to the smart host, not to the
		// next MX of the same receiver.
		if d.NextHost && !(tc.reroute && tc.route == route.Direct && route.Classify(d.Status).Reroutable()) {
			out.NextHost, out.NextHostDecision = true, d
			return out, nil, true
		}
		fail(stMail, err, rcpts)
		if reply, ok := smtpstatus.FromError(err); ss.used > 0 && (!ok || reply.Code == 421) {
			out.Stale, out.Broken = true, true
			return out, nil, true
		}
		ss.reset(&out)
		return out, nil, true
	}
	var accepted, retry []rcptRef
	for i, r := range rcpts {
		err := ss.Rcpt(r.Addr, rcptOptions(m, r.Index))
		if err == nil {
			accepted = append(accepted, r)
			continue
		}
		reply, ok := smtpstatus.FromError(err)
		if !ok {
			fail(stRcpt, err, rcpts[i:])
			fail(stRcpt, err, accepted)
			return out, nil, true
		}
		if reply.Code == 452 && len(accepted) > 0 {
			retry = append(retry, r)
			continue
		}
		fail(stRcpt, err, []rcptRef{r})
	}
	if len(accepted) == 0 {
		ss.reset(&out)
		return out, nil, true
	}
	rc, err := msg.reader()
	if err != nil {
		all(classify(stQueue, err, where{}), accepted)
		ss.reset(&out)
		return out, nil, true
	}
	reply, err := ss.Data(rc)
	_ = rc.Close() // a close error after a complete read changes nothing: the peer has every byte
	var re readErr
	switch {
	case errors.As(err, &re):
		// We cannot finish DATA without sending a truncated message: the connection is dropped instead.
		all(classify(stQueue, err, where{}), accepted)
		out.Broken = true
		return out, nil, true
	case err != nil:
		fail(stData, err, accepted)
		ss.reset(&out)
		return out, nil, true
	}
	all(decision{Outcome: Sent, Status: reply}, accepted)
	ss.used++
	return out, retry, len(retry) == 0
}

// reset returns the session to a clean state after a failed transaction (RSET); a failing RSET breaks it.
func (ss *session) reset(out *txResult) {
	if out.Broken {
		return
	}
	if err := ss.Reset(); err != nil {
		out.Broken = true
	}
}

func isPrintable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// rcptOptions passes the recipient's DSN parameters (RFC 3461 NOTIFY and ORCPT) on; go-smtp sends them only when
// the next hop advertises DSN. Values that would not survive as parameters are dropped rather than mangled.
func rcptOptions(m *queue.Message, i int) *smtp.RcptOptions {
	if i < 0 || i >= len(m.Recipients) {
		return nil
	}
	r := m.Recipients[i]
	var o smtp.RcptOptions
	valid := map[string]bool{"NEVER": true, "SUCCESS": true, "FAILURE": true, "DELAY": true}
	for _, n := range r.Notify {
		n = strings.ToUpper(n)
		if !valid[n] {
			return nil
		}
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	if len(o.Notify) > 1 && slices.Contains(o.Notify, smtp.DSNNotifyNever) {
		o.Notify = nil // NEVER excludes the others (RFC 3461 4.1); go-smtp would refuse the command
	}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && strings.EqualFold(strings.TrimSpace(typ), "rfc822") && isPrintable(addr) {
		o.OriginalRecipientType = smtp.DSNAddressTypeRFC822
		o.OriginalRecipient = addr
	}
	if len(o.Notify) == 0 && o.OriginalRecipient == "" {
		return nil
	}
	return &o
}
