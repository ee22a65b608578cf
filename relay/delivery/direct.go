package delivery

import (
	"context"
	"errors"
	"net"

	"ptrelay/dnscheck"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// maxCandidates bounds the addresses one direct attempt tries (Postfix's smtp_mx_address_limit is 5; a few more
// cover dual-stack MX hosts), so a domain with dozens of MX records cannot hold a session slot for long.
const maxCandidates = 10

// candidate is one address to try for a next hop.
type candidate struct {
	host string // MX host name, or the smart host's name
	addr string // "ip:port" or "host:port"
	tls  smtpclient.TLSMode
}

// hopDialer opens sessions for one next hop, walking its candidates in order: MX hosts by preference (random
// among equals, as dnscheck returns them), each host's addresses, IPv4 and IPv6. It remembers where it is, so a
// transaction refused with a 4xx at MAIL moves on to the next host instead of starting over.
type hopDialer struct {
	s     *Scheduler
	cfg   *Settings
	key   hopKey
	cands []candidate
	ready bool
	i     int
	last  *decision
	// lastRelay is the relay the last failure happened with ("none" before any address answered).
	lastRelay string
}

// next opens the next session, or returns the decision that applies to the hop's mail when every candidate
// failed (a DNS verdict such as a null MX, or the last connection failure).
func (h *hopDialer) next(ctx context.Context) (*session, *decision) {
	if !h.ready {
		h.ready = true
		if d := h.resolve(ctx); d != nil {
			h.lastRelay = "none"
			return nil, d
		}
	}
	for h.i < len(h.cands) {
		if ctx.Err() != nil {
			d := classify(stAbort, h.key.Route, false, false, ctx.Err())
			return nil, &d
		}
		c := &h.cands[h.i]
		cs, err := smtpclient.Dial(ctx, h.spec(*c))
		if err == nil {
			ss := &session{Session: cs, cand: *c}
			h.i++
			if h.key.Route == route.Smarthost {
				if d := h.s.authenticate(ss, &h.cfg.Smarthosts[0]); d != nil {
					h.lastRelay = ss.Relay()
					ss.Close(true)
					return nil, d
				}
			}
			return ss, nil
		}
		var se *smtpclient.StepError
		st, cause := stConnect, err
		if errors.As(err, &se) {
			st, cause = se.Stage, se.Err
			if st != stConnect {
				h.lastRelay = se.Relay
			}
		}
		d := classify(st, h.key.Route, c.tls == smtpclient.TLSOpportunistic, false, cause)
		h.s.log.Debug("delivery: session setup failed", "hop", h.key.Dest, "route", h.key.Route, "addr", c.addr, "err", err)
		if h.key.Route == route.Smarthost && st == stTLS {
			// Like a refused login, a TLS failure with the smart host is the admin's to fix; mail waits meanwhile.
			h.s.log.Error("delivery: TLS with the smart host failed; mail is deferred", "relay", h.lastRelay, "err", cause,
				"fix", tlsFix(cause, &h.cfg.Smarthosts[0]))
		}
		if d.NextHost && canReroute(h.cfg, h.key.Route, d.Status) {
			// Refused for this host's reputation (a greeting naming our PTR, a blocklist): the domain's other MX
			// hosts apply the same policy, so the smart host takes the mail now (record sees the reply).
			d.NextHost = false
		}
		h.last = &d
		if d.Plaintext && c.tls != smtpclient.TLSOff {
			c.tls = smtpclient.TLSOff // same address again, without TLS (opportunistic: a broken TLS stack must not block mail)
			continue
		}
		h.i++
		if !d.NextHost {
			break
		}
	}
	if h.lastRelay == "" {
		h.lastRelay = "none"
	}
	if h.last == nil {
		d := decision{Outcome: Deferred, Status: ours(stNoAnswer, "no address to try for "+h.key.Dest)}
		h.last = &d
	}
	return nil, h.last
}

func (h *hopDialer) spec(c candidate) smtpclient.Spec {
	sp := smtpclient.Spec{Host: c.host, Addr: c.addr, Helo: h.cfg.Hostname, Timeout: h.s.hooks.IOTimeout,
		TLS: smtpclient.TLSPolicy{Mode: c.tls, RootCAs: h.s.hooks.RootCAs}}
	// delivery.bind is the source of every outbound connection: the smart host may check it too.
	if h.cfg.Direct.Bind.IsValid() {
		sp.Bind = h.cfg.Direct.Bind.String()
	}
	if h.key.Route == route.Smarthost {
		sp.TLS.Verify = h.cfg.Smarthosts[0].Verify
	} else {
		sp.TLS.Verify = c.tls == smtpclient.TLSRequired
	}
	return sp
}

func (h *hopDialer) resolve(ctx context.Context) *decision {
	if h.key.Route == route.Smarthost {
		sh := h.cfg.Smarthosts[0]
		h.cands = []candidate{{host: sh.Host, addr: sh.Address, tls: sh.TLS}}
		return nil
	}
	return h.resolveMX(ctx)
}

func (h *hopDialer) resolveMX(ctx context.Context) *decision {
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
		d := classify(stDNS, route.Direct, false, false, err)
		return &d
	}
	mode, port, bind := h.cfg.Direct.TLS, h.cfg.Direct.Port, h.cfg.Direct.Bind
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
		addrs, err := h.s.res.LookupAddrs(ctx, mx.Host)
		if err != nil {
			if errors.Is(err, dnscheck.ErrTemporary) {
				tempErr = err
			} else {
				permErr = err
			}
			continue
		}
		for _, a := range addrs {
			if bind.IsValid() && bind.Unmap().Is4() != a.Unmap().Is4() {
				continue // a source address of one family cannot reach the other
			}
			c := candidate{host: mx.Host, addr: net.JoinHostPort(a.Unmap().String(), port), tls: mode}
			switch {
			case !familyAllowed(fams, a):
				if len(unfit) < maxCandidates {
					unfit = append(unfit, c)
				}
			case len(h.cands) < maxCandidates:
				h.cands = append(h.cands, c)
			}
		}
	}
	if len(h.cands) == 0 && len(unfit) > 0 {
		h.s.log.Debug("delivery: only addresses of a family whose egress failed the check", "hop", h.key.Dest)
		h.cands = unfit
	}
	if len(h.cands) > 0 {
		return nil
	}
	switch {
	case tempErr != nil:
		d := classify(stDNS, route.Direct, false, false, tempErr)
		return &d
	case permErr != nil:
		// Every exchanger lacks an address (or the domain itself, with an implicit MX): nothing to wait for.
		d := decision{Outcome: Bounced, Status: ours(stNoAddress, "Host or domain name not found: "+errText(permErr))}
		return &d
	}
	d := decision{Outcome: Deferred, Status: ours(stNoAnswer, "no usable address for the mail exchangers of "+h.key.Dest+" (delivery.bind family?)")}
	return &d
}
