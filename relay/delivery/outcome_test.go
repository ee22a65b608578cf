package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"ptrelay/dnscheck"
)

// One row per rule of the outbound classification: what each failure at each stage means for a recipient.
func TestClassify(t *testing.T) {
	reply := func(code int, ec smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
	dnsErr := func(kind error) error { return &dnscheck.Error{Name: "dest.test", Type: "MX", Kind: kind} }
	cases := []struct {
		name       string
		st         stage
		opp, first bool // where: opportunistic TLS; a 4xx to MAIL moves to the next candidate
		err        error
		outcome    Outcome
		enhanced   string
		code       int
		nextHost   bool
		plaintext  bool
	}{
		{"2xx after DATA", stData, true, false, reply(250, smtp.EnhancedCode{2, 0, 0}, "ok"), Sent, "2.0.0", 250, false, false},
		{"connect failure: next MX, 4.4.1", stConnect, true, false, refused, Deferred, "4.4.1", 0, true, false},
		{"4xx greeting: next MX", stGreeting, true, false, reply(421, smtp.EnhancedCode{4, 3, 2}, "busy"), Deferred, "4.3.2", 421, true, false},
		{"5xx greeting: next MX, deferred", stGreeting, true, false, reply(554, smtp.EnhancedCode{5, 7, 1}, "go away"), Deferred, "5.7.1", 554, true, false},
		{"4xx to EHLO: next MX", stEHLO, true, false, reply(451, smtp.NoEnhancedCode, "later"), Deferred, "", 451, true, false},
		{"4xx to MAIL, first transaction: next MX", stMail, true, true, reply(451, smtp.EnhancedCode{4, 7, 1}, "greylisted"), Deferred, "4.7.1", 451, true, false},
		{"4xx to MAIL on a reused session: deferred", stMail, true, false, reply(451, smtp.EnhancedCode{4, 7, 1}, "greylisted"), Deferred, "4.7.1", 451, false, false},
		{"lost connection at greeting: next MX, 4.4.2", stGreeting, true, false, errors.New("EOF"), Deferred, "4.4.2", 0, true, false},
		{"STARTTLS handshake failure, opportunistic: plaintext", stTLS, true, false, errors.New("tls: handshake failure"), Deferred, "4.7.5", 0, false, true},
		{"STARTTLS failure, tls=verify: next MX", stTLS, false, false, errors.New("x509: unknown authority"), Deferred, "4.7.5", 0, true, false},
		{"4xx to RCPT", stRcpt, true, false, reply(450, smtp.EnhancedCode{4, 2, 0}, "mailbox busy"), Deferred, "4.2.0", 450, false, false},
		{"4xx to DATA", stData, true, false, reply(451, smtp.EnhancedCode{4, 3, 0}, "later"), Deferred, "4.3.0", 451, false, false},
		{"5xx to RCPT", stRcpt, true, false, reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"), Bounced, "5.1.1", 550, false, false},
		{"5xx to MAIL", stMail, true, true, reply(553, smtp.EnhancedCode{5, 1, 8}, "bad sender"), Bounced, "5.1.8", 553, false, false},
		{"5xx to DATA", stData, false, false, reply(554, smtp.EnhancedCode{5, 6, 0}, "content rejected"), Bounced, "5.6.0", 554, false, false},
		{"smart host TLS verification failure: next candidate", stTLS, false, false, errors.New("x509: certificate signed by unknown authority"), Deferred, "4.7.5", 0, true, false},
		{"535 from the smart host: deferred, class 4, next host", stAuth, false, false, reply(535, smtp.EnhancedCode{5, 7, 8}, "authentication failed"), Deferred, "4.7.8", 535, true, false},
		{"DNS SERVFAIL/timeout", stDNS, true, false, dnsErr(dnscheck.ErrTemporary), Deferred, "4.4.3", 0, false, false},
		{"NXDOMAIN: bounced 5.1.2", stDNS, true, false, dnsErr(dnscheck.ErrNXDomain), Bounced, "5.1.2", 0, false, false},
		{"no MX and no address: bounced 5.4.4", stDNS, true, false, dnsErr(dnscheck.ErrNoAddress), Bounced, "5.4.4", 0, false, false},
		{"null MX: bounced 5.1.10", stDNS, true, false, dnsErr(dnscheck.ErrNullMX), Bounced, "5.1.10", 0, false, false},
		{"timeout mid-dialogue", stRcpt, true, false, timeout, Deferred, "4.4.2", 0, false, false},
		{"shutdown", stAbort, true, false, context.Canceled, Deferred, "4.3.2", 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := classify(c.st, c.err, where{opportunisticTLS: c.opp, nextOnMail: c.first})
			if d.Outcome != c.outcome || d.Status.Enhanced.String() != c.enhanced || d.Status.Code != c.code ||
				d.NextHost != c.nextHost || d.Plaintext != c.plaintext {
				t.Errorf("classify = %+v, want outcome=%s enhanced=%q code=%d next=%v plain=%v",
					d, c.outcome, c.enhanced, c.code, c.nextHost, c.plaintext)
			}
			if d.Status.Code != 0 && d.Status.Enhanced[0] != 0 && c.st != stAuth && d.Status.Enhanced[0] != d.Status.Code/100 {
				t.Errorf("enhanced class %d disagrees with code %d", d.Status.Enhanced[0], d.Status.Code)
			}
		})
	}
}
