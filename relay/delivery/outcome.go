package delivery

import (
	"errors"
	"net"
	"os"
	"strings"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/relay/smtpstatus"
)

// decision is what one failure means for the recipients it touched.
type decision struct {
	Outcome Outcome
	Status  smtpstatus.Status
	// NextHost: the failure is the host's, not the message's (no connection, a refusing greeting or EHLO, TLS,
	// a refused login): the hop's next candidate gets the same transaction, whatever the route.
	NextHost bool
	// skipHost: with NextHost, the host itself refused us (a login), so its other addresses are skipped too.
	skipHost bool
	// Plaintext: opportunistic STARTTLS failed; retry the same address without TLS.
	Plaintext bool
	// Stage is the step the failure happened at (smart-host replies are judged by it: smarthost_class.go).
	Stage stage
	// RetryAt, when set, replaces the backoff: the next attempt is due then (a smart host's window frees).
	RetryAt time.Time
	// NoAttempt: no smart host could take the recipient now, so nothing was tried: its attempt is not counted.
	NoAttempt bool
	// tls is the security level the attempt ran under (tlspolicy.LevelOf), for the log's tls= field.
	tls string
	// policy names the recipient's TLS policy that deferred the mail ("MTA-STS", "DANE"), "" otherwise.
	policy string
}

// where says what classification needs to know about a failure besides its stage and error.
type where struct {
	opportunisticTLS bool // the session's STARTTLS was opportunistic: a TLS failure retries in plaintext
	// nextOnMail: a 4xx to MAIL moves the transaction to the hop's next candidate. Direct delivery does that in
	// a session's first transaction (RFC 5321 5.1: another MX may accept), where the reply is about the host.
	nextOnMail bool
}

// ours builds a status for a failure the peer gave no reply for (Code 0, as queue.Attempt documents).
func ours(enhanced smtpstatus.Enhanced, text string) smtpstatus.Status {
	return smtpstatus.Status{Enhanced: enhanced, Text: text}
}

// Statuses we record ourselves. RFC 3463 subjects: 4.4.x network and routing, 4.7.5 cryptographic failure,
// 5.1.x addressing.
var (
	stNoAnswer     = smtpstatus.Enhanced{4, 4, 1}  // connect failed
	stBadConn      = smtpstatus.Enhanced{4, 4, 2}  // lost connection, timed out
	stDNSTemporary = smtpstatus.Enhanced{4, 4, 3}  // DNS SERVFAIL / timeout
	stNXDomain     = smtpstatus.Enhanced{5, 1, 2}  // recipient domain does not exist
	stNoAddress    = smtpstatus.Enhanced{5, 4, 4}  // no MX and no A/AAAA: unable to route
	stNoRoute      = smtpstatus.Enhanced{4, 4, 4}  // unable to route, for now: the smart host's name does not resolve
	stNullMX       = smtpstatus.Enhanced{5, 1, 10} // RFC 7505 3.2
	stTLSFailure   = smtpstatus.Enhanced{4, 7, 5}  // cryptographic failure
	stLocalError   = smtpstatus.Enhanced{4, 3, 0}  // our own storage
	stShutdown     = smtpstatus.Enhanced{4, 3, 2}  // system not accepting: we stopped
	stExpired      = smtpstatus.Enhanced{4, 4, 7}  // delivery time expired (RFC 3463 X.4.7)
	stAdminBounce  = smtpstatus.Enhanced{5, 0, 0}
	stNoUTF8       = smtpstatus.Enhanced{5, 6, 7} // RFC 6531 3.6: SMTPUTF8 needed, not offered
)

// classify maps a failure at a stage of the dialogue (or of the attempt around it) to an outcome.
func classify(st stage, err error, w where) decision {
	d := classifyAt(st, err, w)
	d.Stage = st
	return d
}

func classifyAt(st stage, err error, w where) decision {
	if reply, ok := smtpstatus.FromError(err); ok {
		return classifyReply(st, w, reply)
	}
	switch st {
	case stDNS:
		switch {
		case errors.Is(err, dnscheck.ErrNullMX):
			return decision{Outcome: Bounced, Status: ours(stNullMX, "Domain does not accept mail (null MX, RFC 7505): "+errText(err))}
		case errors.Is(err, dnscheck.ErrNXDomain):
			// NXDOMAIN is authoritative: the domain does not exist, so waiting cannot help. 5.1.2 "bad destination
			// system address" is what the sender needs to read (a typo in the domain), rather than 5.4.4.
			return decision{Outcome: Bounced, Status: ours(stNXDomain, "Host or domain name not found: "+errText(err))}
		case errors.Is(err, dnscheck.ErrNoAddress):
			return decision{Outcome: Bounced, Status: ours(stNoAddress, "No MX and no address for the domain: "+errText(err))}
		}
		return decision{Outcome: Deferred, Status: ours(stDNSTemporary, "Temporary DNS failure: "+errText(err))}
	case stConnect:
		return decision{Outcome: Deferred, NextHost: true, Status: ours(stNoAnswer, "connect failed: "+errText(err))}
	case stTLS:
		// Opportunistic TLS retries the same address in plaintext; TLS that is required moves on.
		return decision{Outcome: Deferred, Plaintext: w.opportunisticTLS, NextHost: !w.opportunisticTLS,
			Status: ours(stTLSFailure, "TLS failure: "+errText(err))}
	case stQueue:
		return decision{Outcome: Deferred, Status: ours(stLocalError, "cannot read the queued message: "+errText(err))}
	case stAbort:
		return decision{Outcome: Deferred, Status: ours(stShutdown, "delivery interrupted: ptrelay is stopping")}
	}
	// A network failure in the middle of the dialogue: the peer may have been overloaded or the path broken.
	what := "lost connection"
	if isTimeout(err) {
		what = "conversation timed out"
	}
	d := decision{Outcome: Deferred, Status: ours(stBadConn, what+" during "+strings.ToUpper(string(st))+": "+errText(err))}
	d.NextHost = st == stGreeting || st == stEHLO || st == stAuth || (st == stMail && w.nextOnMail)
	return d
}

func classifyReply(st stage, w where, s smtpstatus.Status) decision {
	temp := s.Code/100 == 4
	switch st {
	case stGreeting, stEHLO:
		// Postfix's smtp_skip_5xx_greeting: a 5xx greeting is one host's problem, not the recipient's.
		return decision{Outcome: Deferred, NextHost: true, Status: s}
	case stTLS:
		return decision{Outcome: Deferred, NextHost: true, Status: s}
	case stAuth:
		// A refused login is our configuration's fault: defer (never bounce users' mail) and keep the reply,
		// recorded as temporary like Postfix's dsn=4.x.x. Another host may take the mail; another address of
		// this one would refuse the same credentials.
		if s.Enhanced != (smtpstatus.Enhanced{}) {
			s.Enhanced[0] = 4
		} else {
			s.Enhanced = smtpstatus.Enhanced{4, 7, 0}
		}
		return decision{Outcome: Deferred, NextHost: true, skipHost: true, Status: s}
	case stMail:
		if temp {
			return decision{Outcome: Deferred, NextHost: w.nextOnMail, Status: s}
		}
	}
	switch {
	case s.Code/100 == 2:
		return decision{Outcome: Sent, Status: s}
	case temp:
		return decision{Outcome: Deferred, Status: s}
	case s.Code/100 == 5:
		return decision{Outcome: Bounced, Status: s}
	}
	// Anything else (a 3xx where none belongs, garbage) is a protocol error: try again later.
	return decision{Outcome: Deferred, Status: s}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// errText shortens network errors ("dial tcp 127.0.0.1:25: connect: connection refused" stays readable) and
// keeps one line.
func errText(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
