package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"

	"ptrelay/dnscheck"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// authenticate logs in to the smart host when a username is configured: PLAIN when offered (one round trip),
// else LOGIN (Office 365). Credentials never cross a plaintext connection unless smarthost.tls = "none" says
// the admin wants exactly that (a relay on the LAN).
//
// Every failure defers: a wrong password is a configuration error, and bouncing users' mail for it would turn
// an admin's typo into lost mail. A refused login is logged at ERROR with the fix.
func (s *Scheduler) authenticate(ss *session, sh *Smarthost) *decision {
	if sh.Username == "" {
		return nil
	}
	// Any failure is this host's (the next smart host, with its own credentials, may do better): NextHost,
	// and not another address of the same host.
	defer_ := func(st smtpstatus.Status, fix string, cause error) *decision {
		s.log.Error("smart host login failed", "relay", ss.Relay(), "username", sh.Username,
			"reply", st.String(), "err", cause, "fix", fix)
		return &decision{Outcome: Deferred, Status: st, NextHost: true, skipHost: true}
	}
	pass, err := sh.Password()
	if err != nil {
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "no smart host password"), err.Error(), err)
	}
	err = ss.Auth(smtpclient.Credentials{Username: sh.Username, Password: pass, AllowPlaintext: sh.TLS == smtpclient.TLSOff})
	var notOffered *smtpclient.AuthNotOfferedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, smtpclient.ErrPlaintextAuth):
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "refusing to send credentials to "+ss.Relay()+" without TLS"),
			"set smarthost.tls to \"starttls\" or \"implicit\" as the provider documents", nil)
	case errors.As(err, &notOffered):
		return defer_(ours(smtpstatus.Enhanced{4, 7, 0}, "the smart host offers neither AUTH PLAIN nor LOGIN (offered: "+notOffered.Offered+")"),
			"check smarthost.address and smarthost.tls: many servers offer AUTH only on port 587 after STARTTLS", nil)
	case smtpstatus.IsReply(err):
		d := classify(stAuth, err, where{})
		return defer_(d.Status, "check smarthost.username, and the password in "+sh.PasswordSource+": the smart host refused them", err)
	}
	d := classify(stAuth, err, where{})
	return &d
}

// resolveSmarthosts finds the candidates of the smart host hop: each smart host in order, each of its addresses.
// A name is looked up with the configured resolver (dns.resolvers), never the system's; an IP literal is used
// as it is. A smart host whose name does not resolve is the admin's to fix: the mail is deferred, never bounced.
func (h *hopWalk) resolveSmarthosts(ctx context.Context) *decision {
	var failed []string
	var temporary bool
	for i := range h.cfg.Smarthosts {
		sh := &h.cfg.Smarthosts[i]
		addrs, err := h.s.lookupHost(ctx, sh.Host)
		if err != nil {
			temporary = temporary || !errors.Is(err, dnscheck.ErrNXDomain) && !errors.Is(err, dnscheck.ErrNoAddress)
			failed = append(failed, errText(err))
			h.s.log.Error("cannot resolve the smart host; mail is deferred", "smarthost", sh.Address, "err", err,
				"fix", "check smarthost.address: its name must resolve through dns.resolvers (or /etc/resolv.conf when that is empty)")
			continue
		}
		tls := smtpclient.TLSPolicy{Mode: sh.TLS, Verify: sh.Verify, RootCAs: h.s.opts.RootCAs}
		if !h.add(&h.cands, candidate{host: sh.Host, tls: tls, smarthost: sh}, addrs, sh.Port) {
			break
		}
	}
	if len(h.cands) > 0 {
		return nil
	}
	if len(failed) == 0 {
		d := decision{Outcome: Deferred, Status: ours(stNoAnswer, "no address to try for "+h.key.String()+" (delivery.bind family?)")}
		return &d
	}
	// Deferred either way: a missing name is a configuration mistake, not the recipient's.
	enh := stNoRoute
	if temporary {
		enh = stDNSTemporary
	}
	d := decision{Outcome: Deferred, Status: ours(enh, "cannot resolve the smart host: "+strings.Join(failed, "; "))}
	return &d
}

// tlsFix is the sentence that tells the admin how to fix a failed TLS session with the smart host: the
// certificate's problem when it has one (who signed it, which names it holds, its dates), else the port and
// smarthost.tls, which disagree most often.
func tlsFix(err error, sh *Smarthost) string {
	var unknownCA x509.UnknownAuthorityError
	var badName x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA):
		return "the smart host's certificate is signed by a CA this machine does not trust: install that CA " +
			"(copy it to /usr/local/share/ca-certificates/ and run update-ca-certificates), or, for a host on your " +
			"LAN with a self-signed certificate, set smarthost.tls_verify = false"
	case errors.As(err, &badName):
		names := "no DNS names"
		if c := badName.Certificate; c != nil && len(c.DNSNames) > 0 {
			names = strings.Join(c.DNSNames, ", ")
		}
		return "the smart host's certificate does not name " + sh.Host + " (it names " + names + "): write one of " +
			"those names in smarthost.address, or set smarthost.tls_verify = false for a host on your LAN"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the smart host's certificate has expired or is not yet valid (check this machine's clock): ask its " +
			"admin to renew it, or set smarthost.tls_verify = false for a host on your LAN"
	case errors.As(err, &invalid):
		return "the smart host's certificate is not valid for a TLS server (" + invalid.Error() + "): ask its admin " +
			"to replace it, or set smarthost.tls_verify = false for a host on your LAN"
	}
	return "check that smarthost.tls matches the port (starttls: 587, implicit: 465) and that the smart host " +
		"offers TLS there"
}

// lookupHost returns the addresses of a host named in the configuration (a smart host) through the configured
// resolver; an IP literal or localhost is never looked up (dnscheck.ResolveHost).
func (s *Scheduler) lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if s.res == nil {
		return dnscheck.ResolveHost(ctx, nil, host)
	}
	return dnscheck.ResolveHost(ctx, s.res, host)
}
