package delivery

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"ptrelay/relay/route"
	"ptrelay/relay/smtpclient"
)

// maxCandidates bounds the addresses one attempt tries (Postfix's smtp_mx_address_limit is 5; a few more cover
// dual-stack hosts), so a domain with dozens of MX records cannot hold a session slot for long.
const maxCandidates = 10

// hopKey names a next hop: the recipient domain for direct delivery; for the smart host route, one smart host by
// name (smarthost_route.go chooses it per transaction; before that choice, Dest is "" for the list or the host a
// rule pins). Sessions, limits (per_destination, a smart host's max_connections) and a shared verdict when the
// whole hop fails are per hop.
type hopKey struct {
	Route route.Route
	Dest  string
}

func (k hopKey) String() string {
	if k.Route == route.Smarthost {
		if k.Dest == "" {
			return "the smart hosts"
		}
		return "smart host " + k.Dest
	}
	return k.Dest
}

// candidate is one address to try for a next hop: one of an MX host's addresses, or of a smart host's.
type candidate struct {
	host string               // the MX host's or smart host's name: relay=, and the TLS name
	addr string               // "ip:port"
	tls  smtpclient.TLSPolicy // how this address's session is secured: per candidate, so per-host policies fit
	// smarthost is the smart host the address belongs to, whose login follows EHLO; nil for an MX host.
	smarthost *Smarthost
}

// hopWalk opens sessions for one next hop by walking its candidates in order: the MX hosts of a domain by
// preference (random among equals, as dnscheck returns them) or the smart hosts in the order configured, each
// host's addresses, IPv4 then IPv6. A failure that is the host's rather than the message's (decision.NextHost:
// no connection, a refusing greeting, TLS, a refused login) moves on to the next candidate while the hop has
// one; the route does not matter. The walk remembers where it is, so a transaction refused with a 4xx at the
// first MAIL moves on to the next host instead of starting over.
type hopWalk struct {
	s     *Scheduler
	cfg   *Settings
	key   hopKey
	cands []candidate
	ready bool
	i     int
	last  *decision
	// hosts is the direct hop's TLS policy for its MX hosts (resolveMX); nil for the smart host hop.
	hosts hostPolicy
	// lastRelay is the relay the last failure happened with ("none" before any address answered).
	lastRelay string
}

func newHopWalk(s *Scheduler, cfg *Settings, key hopKey) *hopWalk {
	return &hopWalk{s: s, cfg: cfg, key: key}
}

// next opens the next session, or returns the decision that applies to the hop's mail when every candidate
// failed (a DNS verdict such as a null MX, or the last failure).
func (h *hopWalk) next(ctx context.Context) (*session, *decision) {
	if !h.ready {
		h.ready = true
		if d := h.resolve(ctx); d != nil {
			h.lastRelay = "none"
			return nil, d
		}
	}
	for h.i < len(h.cands) {
		if ctx.Err() != nil {
			d := classify(stAbort, ctx.Err(), where{})
			return nil, &d
		}
		c := &h.cands[h.i]
		ss, d := h.open(ctx, c)
		if d == nil {
			h.i++
			return ss, nil
		}
		h.last = d
		if d.Plaintext && c.tls.Mode == smtpclient.TLSOpportunistic {
			c.tls.Mode = smtpclient.TLSOff // same address again, without TLS (a broken TLS stack must not block mail)
			continue
		}
		h.i++
		if d.skipHost {
			// The host itself refused us (a login): its other addresses would say the same.
			for h.i < len(h.cands) && h.cands[h.i].host == c.host && h.cands[h.i].smarthost == c.smarthost {
				h.i++
			}
		}
		if !d.NextHost {
			break
		}
	}
	if h.lastRelay == "" {
		h.lastRelay = "none"
	}
	if h.last == nil {
		d := decision{Outcome: Deferred, Status: ours(stNoAnswer, "no address to try for "+h.key.String())}
		h.last = &d
	}
	return nil, h.last
}

// open dials one candidate and logs in when it is a smart host; a failure is the decision it means. A smart
// host that refused a token is dialed once more, with a fresh token (authenticate).
func (h *hopWalk) open(ctx context.Context, c *candidate) (*session, *decision) {
	for again := false; ; again = true {
		ss, d, retry := h.dial(ctx, c, again)
		if !retry {
			return ss, d
		}
	}
}

func (h *hopWalk) dial(ctx context.Context, c *candidate, again bool) (*session, *decision, bool) {
	cs, err := smtpclient.Dial(ctx, h.spec(*c))
	if err == nil {
		ss := &session{Session: cs, cand: *c}
		if c.smarthost == nil {
			h.opened(c, cs)
			return ss, nil, false
		}
		d, retry := h.s.authenticate(ctx, ss, c.smarthost, again)
		if d == nil && !retry {
			return ss, nil, false
		}
		h.lastRelay = ss.Relay()
		ss.Close(true)
		return nil, d, retry
	}
	var se *smtpclient.StepError
	st, cause := stConnect, err
	if errors.As(err, &se) {
		st, cause = se.Stage, se.Err
		if st != stConnect {
			h.lastRelay = smarthostRelay(c.smarthost, se.Relay)
		}
	}
	d := classify(st, cause, where{opportunisticTLS: c.tls.Mode == smtpclient.TLSOpportunistic})
	h.tlsFailure(c, st, cause, &d)
	h.s.log.Debug("session setup failed", "hop", h.key.String(), "route", h.key.Route, "addr", c.addr, "err", err)
	if c.smarthost != nil && st == stTLS {
		// Like a refused login, a TLS failure with a smart host is the admin's to fix; mail waits meanwhile.
		h.s.log.Error("TLS with the smart host failed; mail is deferred", "relay", h.lastRelay, "err", cause,
			"fix", tlsFix(cause, c.smarthost))
	}
	if d.NextHost && canReroute(h.cfg, h.key.Route, d.Status) {
		// Refused for this host's reputation (a greeting naming our PTR, a blocklist): the domain's other MX
		// hosts apply the same policy, so the smart host takes the mail now (record sees the reply).
		d.NextHost = false
	}
	return nil, &d, false
}

// spec is how to open a session with one candidate.
func (h *hopWalk) spec(c candidate) smtpclient.Spec {
	sp := smtpclient.Spec{Host: c.host, Addr: c.addr, Helo: h.cfg.Hostname, Timeout: h.s.opts.IOTimeout, TLS: c.tls}
	// delivery.bind is the source of every outbound connection: a smart host may check it too.
	if h.cfg.Direct.Bind.IsValid() {
		sp.Bind = h.cfg.Direct.Bind.String()
	}
	return sp
}

func (h *hopWalk) resolve(ctx context.Context) *decision {
	if h.key.Route == route.Smarthost {
		return h.resolveSmarthosts(ctx)
	}
	return h.resolveMX(ctx)
}

// add appends the candidates of one host's addresses, within maxCandidates, leaving out those a source address
// of the other family (delivery.bind) cannot reach. It reports whether there is room for more.
func (h *hopWalk) add(list *[]candidate, c candidate, addrs []netip.Addr, port string) bool {
	bind := h.cfg.Direct.Bind
	for _, a := range addrs {
		if len(*list) >= maxCandidates {
			return false
		}
		if bind.IsValid() && bind.Unmap().Is4() != a.Unmap().Is4() {
			continue
		}
		c.addr = net.JoinHostPort(a.Unmap().String(), port)
		*list = append(*list, c)
	}
	return len(*list) < maxCandidates
}
