package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"ptrelay/relay/oauth"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// authenticate logs in to the smart host when a username is configured: with a password (PLAIN when offered,
// one round trip, else LOGIN, or the mechanism auth names), or with an OAuth2 access token (XOAUTH2).
// Credentials never cross a plaintext connection unless the host's tls = "none" says the admin wants exactly
// that (a relay on the LAN).
//
// Every failure defers: a wrong password is a configuration error, and bouncing users' mail for it would turn an
// admin's typo into lost mail. A refused login is logged at ERROR with the fix, and told to the alerts. retry
// asks the caller to log in once more on a new session: the host refused a token that the source has now
// dropped (revoked, or its rights changed), and a new one may pass.
func (s *Scheduler) authenticate(ctx context.Context, ss *session, sh *Smarthost, again bool) (*decision, bool) {
	if sh.Username == "" {
		return nil, false
	}
	// Any failure is this host's (the next smart host, with its own credentials, may do better): NextHost,
	// and not another address of the same host.
	refused := func(st smtpstatus.Status, fix string, cause error, login bool) *decision {
		s.log.Error("smart host login failed; mail is deferred", "relay", ss.Relay(), "username", sh.Username,
			"reply", replyText(st), "err", cause, "fix", fix)
		if login && s.obs.OnLoginRefused != nil {
			s.obs.OnLoginRefused(sh.Name, replyText(st))
		}
		return &decision{Outcome: Deferred, Status: st, NextHost: true, skipHost: true, Stage: stAuth}
	}
	cred := smtpclient.Credentials{Mech: sh.Auth, Username: sh.Username, AllowPlaintext: sh.TLS == smtpclient.TLSOff}
	var tok oauth.Token
	if sh.Auth == smtpclient.AuthXOAUTH2 {
		src := s.tokens.get(sh, s.opts.Now)
		if src == nil {
			return refused(ours(smtpstatus.Enhanced{4, 7, 0}, "no [smarthosts.oauth2] settings for "+sh.Name),
				"add the [smarthosts.oauth2] table of this host", nil, false), false
		}
		var err error
		tok, err = src.Token(ctx)
		if err != nil {
			var oe *oauth.Error
			fix := "check the [smarthosts.oauth2] settings of smart host " + sh.Name
			login := false
			if errors.As(err, &oe) {
				fix, login = oe.Fix, oe.Refused()
			}
			return refused(ours(smtpstatus.Enhanced{4, 7, 0}, errText(err)), fix, err, login), false
		}
		cred.Password = tok.Value
	} else {
		pass, err := sh.Password()
		if err != nil {
			return refused(ours(smtpstatus.Enhanced{4, 7, 0}, "no smart host password"), err.Error(), err, false), false
		}
		cred.Password = pass
	}
	err := ss.Auth(cred)
	var notOffered *smtpclient.AuthNotOfferedError
	switch {
	case err == nil:
		ss.tokenRenewAt = tok.RenewAt
		if s.obs.OnLoginOK != nil {
			s.obs.OnLoginOK(sh.Name)
		}
		return nil, false
	case errors.Is(err, smtpclient.ErrPlaintextAuth):
		return refused(ours(smtpstatus.Enhanced{4, 7, 0}, "refusing to send credentials to "+ss.Relay()+" without TLS"),
			"set tls of smart host "+sh.Name+" to \"starttls\" or \"implicit\" as the provider documents", nil, false), false
	case errors.As(err, &notOffered):
		return refused(ours(smtpstatus.Enhanced{4, 7, 0}, notOffered.Error()), notOfferedFix(sh, notOffered), nil, false), false
	case smtpstatus.IsReply(err):
		if sh.Auth == smtpclient.AuthXOAUTH2 && !again {
			// A token the host refuses may have been revoked, or issued before its rights changed: fetch a
			// fresh one, once.
			s.tokens.get(sh, s.opts.Now).Invalidate(tok.Value)
			s.log.Info("smart host refused the OAuth2 token; fetching a new one", "relay", ss.Relay(), "reply", errText(err))
			return nil, true
		}
		d := classify(stAuth, err, where{})
		reply, _ := smtpstatus.FromError(err)
		return refused(d.Status, LoginFix(sh, reply), err, true), false
	}
	d := classify(stAuth, err, where{})
	d.skipHost = d.NextHost
	return &d, false
}

// notOfferedFix: the host does not offer the mechanism.
func notOfferedFix(sh *Smarthost, e *smtpclient.AuthNotOfferedError) string {
	if e.Offered == "" {
		return "check the address and tls of smart host " + sh.Name + ": many servers offer AUTH only on port 587 after STARTTLS"
	}
	if sh.Auth == smtpclient.AuthXOAUTH2 {
		return "the host does not offer XOAUTH2 (it offers " + e.Offered + "): set auth to a mechanism it offers, or check the address"
	}
	return "set auth of smart host " + sh.Name + " to a mechanism it offers (" + e.Offered + ")"
}

// LoginFix is the sentence for a login the host refused with reply.
func LoginFix(sh *Smarthost, reply smtpstatus.Status) string {
	text := strings.ToLower(reply.Text)
	switch {
	case reply.Enhanced == smtpstatus.Enhanced{5, 7, 30} || strings.Contains(text, "basic authentication is not supported"):
		return "the provider turned off password logins: set auth = \"xoauth2\" with an [smarthosts.oauth2] table for smart host " + sh.Name + " (see docs/microsoft365.md)"
	case reply.Enhanced == smtpstatus.Enhanced{5, 7, 139} || strings.Contains(text, "smtpclientauthentication is disabled"):
		return "SMTP AUTH is disabled for this mailbox or the tenant: run Set-CASMailbox -Identity " + sh.Username + " -SmtpClientAuthenticationDisabled $false (and check Set-TransportConfig and security defaults)"
	case sh.Auth != smtpclient.AuthXOAUTH2:
		return "check the username of smart host " + sh.Name + ", and the password in " + sh.PasswordSource + ": the smart host refused them"
	case sh.OAuth != nil && sh.OAuth.Provider == oauth.Microsoft:
		return "Exchange Online refused the token for " + sh.Username + ": register the app's service principal (New-ServicePrincipal with the Enterprise application's object ID), give it the mailbox (Add-MailboxPermission), and enable SMTP AUTH for the mailbox (docs/microsoft365.md)"
	case sh.OAuth != nil && sh.OAuth.Provider == oauth.Google:
		return "Google refused the token for " + sh.Username + ": check that username is the Workspace mailbox and that domain-wide delegation grants " + oauth.ScopeGoogle + " to the service account (docs/google-workspace.md)"
	}
	return "the smart host refused the token for " + sh.Username + ": check username and the token endpoint's scopes"
}

// tokenSources keeps one oauth.Source per smart host, across reloads while its OAuth settings stay the same, so
// that a reload does not throw good tokens away.
type tokenSources struct {
	mu   sync.Mutex
	byID map[string]tokenEntry
}

type tokenEntry struct {
	key string
	src *oauth.Source
}

// get returns h's source (nil when h has no OAuth settings).
func (ts *tokenSources) get(h *Smarthost, now func() time.Time) *oauth.Source {
	if h.OAuth == nil {
		return nil
	}
	o := *h.OAuth
	key := fmt.Sprint(o.Provider, "|", o.TokenURL, "|", o.Tenant, "|", o.ClientID, "|", o.SecretSource, "|",
		o.ServiceAccountFile, "|", o.Subject, "|", o.Scopes)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if e, ok := ts.byID[h.Name]; ok && e.key == key {
		return e.src
	}
	if ts.byID == nil {
		ts.byID = map[string]tokenEntry{}
	}
	o.Now = now
	src := oauth.New(o)
	ts.byID[h.Name] = tokenEntry{key: key, src: src}
	return src
}
