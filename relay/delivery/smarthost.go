package delivery

import (
	"strings"

	"github.com/emersion/go-sasl"

	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// authenticate logs in to the smart host when a username is configured. PLAIN is preferred (one round trip);
// LOGIN is used when it is all the server offers (Office 365). Credentials never cross a plaintext connection
// unless smarthost.tls = "none" says the admin wants exactly that (a relay on the LAN).
//
// Every failure defers: a wrong password is a configuration error, and bouncing users' mail for it would turn
// an admin's typo into lost mail. A refused login is logged at ERROR with the fix.
func (s *Scheduler) authenticate(ss *session, sh *Smarthost) *decision {
	if sh.Username == "" {
		return nil
	}
	defer_ := func(st smtpstatus.Status, fix string, cause error) *decision {
		s.log.Error("delivery: smart host login failed", "relay", ss.relay, "username", sh.Username,
			"reply", st.String(), "err", cause, "fix", fix)
		return &decision{Outcome: Deferred, Status: st}
	}
	if !ss.secure && sh.TLS != tlsOff {
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "refusing to send credentials to "+ss.relay+" without TLS"),
			"set smarthost.tls to \"starttls\" or \"implicit\" as the provider documents", nil)
	}
	pass, err := sh.Password()
	if err != nil {
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "no smart host password"), err.Error(), err)
	}
	var client sasl.Client
	switch {
	case ss.c.SupportsAuth("PLAIN"):
		client = sasl.NewPlainClient("", sh.Username, pass)
	case ss.c.SupportsAuth("LOGIN"):
		client = sasl.NewLoginClient(sh.Username, pass)
	default:
		_, mechs := ss.c.Extension("AUTH")
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "the smart host offers neither AUTH PLAIN nor LOGIN (offered: "+strings.TrimSpace(mechs)+")"),
			"check smarthost.address and smarthost.tls: many servers offer AUTH only on port 587 after STARTTLS", nil)
	}
	if err := ss.c.Auth(client); err != nil {
		d := classify(stAuth, route.Smarthost, false, false, err)
		if smtpstatus.IsReply(err) {
			return defer_(d.Status, "check smarthost.username and the password in "+sh.PasswordSource+": the smart host refused them", err)
		}
		return &d
	}
	return nil
}
