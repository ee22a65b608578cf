package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"

	"ptrelay/dnscheck"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// mxPolicy decides, per MX host, how its sessions are secured, or that the host must not be tried (skip is the
// decision recorded for it then, e.g. a 4.7.x deferral for an MX name an MTA-STS policy does not list). It is
// the seam for per-destination TLS policies; the default, tlsSetting, applies delivery.tls to every host.
type mxPolicy interface {
	forMX(ctx context.Context, domain, host string) (tls smtpclient.TLSPolicy, skip *decision)
}

// tlsSetting is delivery.tls for every MX host: STARTTLS when offered (opportunistic, unverified), required and
// verified ("verify"), or never ("none").
type tlsSetting struct {
	mode  smtpclient.TLSMode
	roots *x509.CertPool
}

// policyForMX returns the policy for the MX hosts of direct hops under cfg.
func (s *Scheduler) policyForMX(cfg *Settings) mxPolicy {
	if s.mxPolicy != nil {
		return s.mxPolicy
	}
	return tlsSetting{mode: cfg.Direct.TLS, roots: s.opts.RootCAs}
}

func (p tlsSetting) forMX(_ context.Context, _, _ string) (smtpclient.TLSPolicy, *decision) {
	return smtpclient.TLSPolicy{Mode: p.mode, Verify: p.mode == smtpclient.TLSRequired, RootCAs: p.roots}, nil
}

// resolveMX finds the candidates of a direct hop: the domain's MX hosts (or its own address, the implicit MX),
// each host's addresses, each with the TLS policy of its host.
func (h *hopWalk) resolveMX(ctx context.Context) *decision {
	if h.s.res == nil {
		d := decision{Outcome: Deferred, Status: ours(stDNSTemporary, "no DNS resolver configured for direct delivery")}
		return &d
	}
	if h.key.Dest == "" {
		d := decision{Outcome: Bounced, Status: ours(smtpstatus.Enhanced{5, 1, 3}, "the recipient address has no domain")}
		return &d
	}
	mxs, err := h.s.res.LookupMX(ctx, h.key.Dest)
	if err != nil {
		d := classify(stDNS, err, where{})
		return &d
	}
	policy := h.s.policyForMX(h.cfg)
	// When one family's egress fails the check and the other passes (IPv6 without a PTR, typically), direct
	// mail uses the passing family only; addresses of the other are the last resort, for a domain reachable
	// only over it.
	fams := h.s.directFamilies()
	var unfit []candidate
	var tempErr, permErr error
	for _, mx := range mxs {
		if len(h.cands) >= maxCandidates {
			break
		}
		tls, skip := policy.forMX(ctx, h.key.Dest, mx.Host)
		if skip != nil {
			h.last = skip
			continue
		}
		addrs, err := h.s.res.LookupAddrs(ctx, mx.Host)
		if err != nil {
			if errors.Is(err, dnscheck.ErrTemporary) {
				tempErr = err
			} else {
				permErr = err
			}
			continue
		}
		var fit, other []netip.Addr
		for _, a := range addrs {
			if familyAllowed(fams, a) {
				fit = append(fit, a)
			} else {
				other = append(other, a)
			}
		}
		c := candidate{host: mx.Host, tls: tls}
		h.add(&h.cands, c, fit, h.cfg.Direct.Port)
		h.add(&unfit, c, other, h.cfg.Direct.Port)
	}
	if len(h.cands) == 0 && len(unfit) > 0 {
		h.s.log.Debug("only addresses of a family whose egress failed the check", "hop", h.key.String())
		h.cands = unfit
	}
	switch {
	case len(h.cands) > 0:
		return nil
	case tempErr != nil:
		d := classify(stDNS, tempErr, where{})
		return &d
	case h.last != nil:
		return h.last // the hosts with addresses were all skipped by their policy
	case permErr != nil:
		// Every exchanger lacks an address (or the domain itself, with an implicit MX): nothing to wait for.
		d := decision{Outcome: Bounced, Status: ours(stNoAddress, "Host or domain name not found: "+errText(permErr))}
		return &d
	}
	d := decision{Outcome: Deferred, Status: ours(stNoAnswer, "no usable address for the mail exchangers of "+h.key.Dest+" (delivery.bind family?)")}
	return &d
}
