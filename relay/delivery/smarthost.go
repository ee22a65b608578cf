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

// resolveSmarthosts finds the candidates of a smart host's hop (key.Dest names the host): its addresses. A name
// is looked up with the configured resolver (dns.resolvers), never the system's; an IP literal is used as it is.
// A name that does not resolve, or a client certificate that cannot be read, is the admin's to fix: a
// host-level failure, so the mail goes to the next smart host or waits, and is never bounced.
func (h *hopWalk) resolveSmarthosts(ctx context.Context) *decision {
	sh := h.cfg.smarthost(h.key.Dest)
	if sh == nil {
		d := decision{Outcome: Deferred, NextHost: true, Status: ours(stNoRoute, "smart host "+h.key.Dest+" is not configured")}
		return &d
	}
	tls := smtpclient.TLSPolicy{Mode: sh.TLS, Verify: sh.Verify, RootCAs: h.s.opts.RootCAs}
	if sh.ClientCert != nil && sh.TLS != smtpclient.TLSOff {
		cert, err := sh.ClientCert()
		if err != nil {
			h.s.log.Error("cannot read the smart host's client certificate; mail is deferred", "smarthost", sh.Name,
				"err", err, "fix", "check tls_client_cert and tls_client_key of this host: a PEM certificate and its key, readable by ptrelay")
			d := decision{Outcome: Deferred, NextHost: true, Status: ours(smtpstatus.Enhanced{4, 7, 5}, "cannot read the client certificate: "+errText(err))}
			return &d
		}
		tls.ClientCert = cert
	}
	addrs, err := h.s.lookupHost(ctx, sh.Host)
	if err != nil {
		temporary := !errors.Is(err, dnscheck.ErrNXDomain) && !errors.Is(err, dnscheck.ErrNoAddress)
		h.s.log.Error("cannot resolve the smart host; mail is deferred", "smarthost", sh.Name, "address", sh.Address,
			"err", err, "fix", "check address of smart host "+sh.Name+": its name must resolve through dns.resolvers (or /etc/resolv.conf when that is empty)")
		// Deferred either way: a missing name is a configuration mistake, not the recipient's.
		enh := stNoRoute
		if temporary {
			enh = stDNSTemporary
		}
		d := decision{Outcome: Deferred, NextHost: true, Status: ours(enh, "cannot resolve smart host "+sh.Name+": "+errText(err))}
		return &d
	}
	h.add(&h.cands, candidate{host: sh.Host, tls: tls, smarthost: sh}, addrs, sh.Port)
	if len(h.cands) > 0 {
		return nil
	}
	d := decision{Outcome: Deferred, NextHost: true, Status: ours(stNoAnswer, "no address to try for "+h.key.String()+" (delivery.bind family?)")}
	return &d
}

// tlsFix is the sentence that tells the admin how to fix a failed TLS session with the smart host: the
// certificate's problem when it has one (who signed it, which names it holds, its dates), else the port and
// the host's tls, which disagree most often.
func tlsFix(err error, sh *Smarthost) string {
	var unknownCA x509.UnknownAuthorityError
	var badName x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA):
		return "the smart host's certificate is signed by a CA this machine does not trust: install that CA " +
			"(copy it to /usr/local/share/ca-certificates/ and run update-ca-certificates), or, for a host on your " +
			"LAN with a self-signed certificate, set tls_verify = false for smart host " + sh.Name
	case errors.As(err, &badName):
		names := "no DNS names"
		if c := badName.Certificate; c != nil && len(c.DNSNames) > 0 {
			names = strings.Join(c.DNSNames, ", ")
		}
		return "the smart host's certificate does not name " + sh.Host + " (it names " + names + "): write one of " +
			"those names in the address of smart host " + sh.Name + ", or set tls_verify = false for a host on your LAN"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the smart host's certificate has expired or is not yet valid (check this machine's clock): ask its " +
			"admin to renew it, or set tls_verify = false for a host on your LAN"
	case errors.As(err, &invalid):
		return "the smart host's certificate is not valid for a TLS server (" + invalid.Error() + "): ask its admin " +
			"to replace it, or set tls_verify = false for a host on your LAN"
	}
	return "check that tls of smart host " + sh.Name + " matches the port (starttls: 587, implicit: 465) and that " +
		"the host offers TLS there"
}

// lookupHost returns the addresses of a host named in the configuration (a smart host) through the configured
// resolver; an IP literal or localhost is never looked up (dnscheck.ResolveHost).
func (s *Scheduler) lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if s.res == nil {
		return dnscheck.ResolveHost(ctx, nil, host)
	}
	return dnscheck.ResolveHost(ctx, s.res, host)
}
