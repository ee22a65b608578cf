package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
	"ptrelay/relay/tlspolicy"
)

// mxPolicy decides how the sessions with a direct hop's MX hosts are secured. It is asked once per walk for
// the recipient domain (forDomain: an MTA-STS lookup, which may defer all of the domain's mail), then per MX
// host. The default, tlsSetting, applies delivery.tls; engineMX applies relay/tlspolicy (MTA-STS, DANE,
// [[delivery.tls_policy]]).
type mxPolicy interface {
	forDomain(ctx context.Context, domain string) (hostPolicy, *decision)
}

// hostPolicy is a domain's policy for its MX hosts.
type hostPolicy interface {
	// forHost returns the TLS policy of one MX host, or the decision recorded when it must not be tried
	// (e.g. a 4.7.x deferral for an MX name an MTA-STS policy does not list).
	forHost(ctx context.Context, h tlspolicy.Host) (smtpclient.TLSPolicy, *decision)
	// opened is told of a session opened with host under p.
	opened(host string, p smtpclient.TLSPolicy, ss *smtpclient.Session)
	// failed turns a TLS failure with host under a policy that required TLS (tlspolicy.Enforced) into its
	// deferral.
	failed(host string, p smtpclient.TLSPolicy, cause error) decision
}

// tlsSetting is delivery.tls for every MX host: STARTTLS when offered (opportunistic, unverified), required and
// verified ("verify"), or never ("none").
type tlsSetting struct {
	mode  smtpclient.TLSMode
	roots *x509.CertPool
}

// policyForMX returns the policy for the MX hosts of direct hops under cfg.
func (s *Scheduler) policyForMX(cfg *Settings) mxPolicy {
	switch {
	case s.mxPolicy != nil:
		return s.mxPolicy
	case s.tlsEngine != nil:
		return engineMX{e: s.tlsEngine, s: cfg.Direct.Policy}
	}
	return tlsSetting{mode: cfg.Direct.TLS, roots: s.opts.RootCAs}
}

func (p tlsSetting) forDomain(context.Context, string) (hostPolicy, *decision) { return p, nil }

func (p tlsSetting) forHost(context.Context, tlspolicy.Host) (smtpclient.TLSPolicy, *decision) {
	return smtpclient.TLSPolicy{Mode: p.mode, Verify: p.mode == smtpclient.TLSRequired, RootCAs: p.roots}, nil
}

func (tlsSetting) opened(string, smtpclient.TLSPolicy, *smtpclient.Session) {}

func (tlsSetting) failed(_ string, p smtpclient.TLSPolicy, cause error) decision {
	return classify(stTLS, cause, where{opportunisticTLS: p.Mode == smtpclient.TLSOpportunistic})
}

// engineMX applies relay/tlspolicy with the settings of one configuration.
type engineMX struct {
	e *tlspolicy.Engine
	s tlspolicy.Settings
}

func (m engineMX) forDomain(ctx context.Context, domain string) (hostPolicy, *decision) {
	d, ref := m.e.ForDomain(ctx, m.s, domain)
	if ref != nil {
		dd := refusal(ref)
		return nil, &dd
	}
	return engineDomain{d}, nil
}

// engineDomain is one recipient domain's policy.
type engineDomain struct{ d *tlspolicy.Domain }

func (p engineDomain) forHost(ctx context.Context, h tlspolicy.Host) (smtpclient.TLSPolicy, *decision) {
	tp, ref := p.d.ForHost(ctx, h)
	if ref != nil {
		d := refusal(ref)
		return tp, &d
	}
	return tp, nil
}

func (p engineDomain) opened(host string, tp smtpclient.TLSPolicy, ss *smtpclient.Session) {
	state, secure := ss.TLSState()
	p.d.Succeeded(host, tp, state, secure)
}

func (p engineDomain) failed(host string, tp smtpclient.TLSPolicy, cause error) decision {
	d := refusal(p.d.Failed(host, tp, cause))
	d.tls = tlspolicy.LevelOf(tp)
	return d
}

// refusal is the decision a policy's refusal means: a deferral naming the policy (never a bounce, never in
// clear, never rerouted: the smart host is no remedy for a TLS policy), and a move to the next MX host.
func refusal(r *tlspolicy.Refusal) decision {
	level := tlspolicy.LevelDANE
	if r.Policy == tlspolicy.PolicyMTASTS {
		level = tlspolicy.LevelMTASTS
	}
	return decision{Outcome: Deferred, NextHost: true, Status: ours(r.Enhanced, r.Text), tls: level, policy: r.Policy}
}

// opened tells the hop's host policy that a session with an MX host is open (TLS-RPT counts, MTA-STS testing).
func (h *hopWalk) opened(c *candidate, ss *smtpclient.Session) {
	if c.smarthost == nil && h.hosts != nil {
		h.hosts.opened(c.host, c.tls, ss)
	}
}

// tlsFailure completes the decision for a session that could not be opened: its tls= level, and for a TLS
// failure under a recipient's policy that required TLS, the policy's deferral.
func (h *hopWalk) tlsFailure(c *candidate, st stage, cause error, d *decision) {
	if c.smarthost == nil && h.hosts != nil && st == stTLS && tlspolicy.Enforced(c.tls) {
		*d = h.hosts.failed(c.host, c.tls, cause)
	}
	if d.tls == "" {
		d.tls = tlspolicy.LevelOf(c.tls)
	}
}

// labelResults gives every result of a transaction the tls= level of the session it ran on.
func labelResults(res []rcptResult, p smtpclient.TLSPolicy) {
	for i := range res {
		if res[i].tls == "" {
			res[i].tls = tlspolicy.LevelOf(p)
		}
	}
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
	mxs, err := h.s.res.LookupMXDNSSEC(ctx, h.key.Dest)
	if err != nil {
		d := classify(stDNS, err, where{})
		return &d
	}
	hosts, d := h.s.policyForMX(h.cfg).forDomain(ctx, h.key.Dest)
	if d != nil {
		return d
	}
	h.hosts = hosts
	// When one family's egress fails the check and the other passes (IPv6 without a PTR, typically), direct
	// mail uses the passing family only; addresses of the other are the last resort, for a domain reachable
	// only over it.
	fams := h.s.directFamilies()
	var unfit []candidate
	var tempErr, permErr error
	for _, mx := range mxs.MX {
		if len(h.cands) >= maxCandidates {
			break
		}
		addrs, err := h.s.res.LookupAddrsDNSSEC(ctx, mx.Host)
		if err != nil {
			if errors.Is(err, dnscheck.ErrTemporary) {
				tempErr = err
			} else {
				permErr = err
			}
			continue
		}
		// TLSA records are those of port 25 whatever delivery.port says: that key only moves where tests connect.
		tls, skip := hosts.forHost(ctx, tlspolicy.Host{Name: mx.Host, MXAuthentic: mxs.Authentic,
			AddrsAuthentic: addrs.Authentic, Canonical: addrs.Canonical, Port: 25})
		if skip != nil {
			h.last = skip
			continue
		}
		var fit, other []netip.Addr
		for _, a := range addrs.Addrs {
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
		return h.last // the hosts with addresses were all refused by their policy
	case permErr != nil:
		// Every exchanger lacks an address (or the domain itself, with an implicit MX): nothing to wait for.
		d := decision{Outcome: Bounced, Status: ours(stNoAddress, "Host or domain name not found: "+errText(permErr))}
		return &d
	}
	d = &decision{Outcome: Deferred, Status: ours(stNoAnswer, "no usable address for the mail exchangers of "+h.key.Dest+" (delivery.bind family?)")}
	return d
}

// policyRetryDue: r, past queue.lifetime, is due for the one more attempt a new MTA-STS policy earned it
// (secondChance): its last attempt, already past the lifetime, was deferred by that policy.
func policyRetryDue(m *queue.Message, r *queue.Recipient, cfg *Settings) bool {
	last, ok := r.LastAttempt()
	return ok && cfg.Lifetime > 0 && last.Outcome == string(Deferred) && last.TLS == tlspolicy.LevelMTASTS &&
		last.At.Sub(m.Arrival) > cfg.Lifetime
}

// refetchTimeout bounds the look for a new MTA-STS policy before a bounce.
const refetchTimeout = 2 * time.Minute

// secondChance reports, for recipients about to expire that an MTA-STS policy kept back, whether a new policy
// now applies to their domain (RFC 8461 5.1: a message is not failed before a new policy was looked for), so
// they get one more attempt under it instead of the bounce. A recipient whose previous attempt was already
// past queue.lifetime had its chance.
func (s *Scheduler) secondChance(cfg *Settings, t *txn, results []rcptResult, now time.Time) map[int]bool {
	if s.tlsEngine == nil || !expired(t.msg, cfg, now) {
		return nil
	}
	var out map[int]bool
	changed := map[string]bool{}
	for _, res := range results {
		if res.policy != tlspolicy.PolicyMTASTS || res.Outcome != Deferred || res.Index >= len(t.msg.Recipients) {
			continue
		}
		if last, ok := t.msg.Recipients[res.Index].LastAttempt(); ok && last.At.Sub(t.msg.Arrival) > cfg.Lifetime {
			continue
		}
		dom := t.key.Dest
		c, asked := changed[dom]
		if !asked {
			ctx, cancel := context.WithTimeout(context.Background(), refetchTimeout)
			c = s.tlsEngine.Refresh(ctx, dom)
			cancel()
			changed[dom] = c
			s.log.Info("MTA-STS policy looked for again before the bounce", "id", t.msg.ID, "domain", dom, "new_policy", c)
		}
		if c {
			if out == nil {
				out = map[int]bool{}
			}
			out[res.Index] = true
		}
	}
	return out
}
