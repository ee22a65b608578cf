// Package route decides, per recipient and per delivery attempt, whether mail goes straight to the recipient
// domain's MX hosts or through the configured smart host. It owns the order of precedence (the first matching
// [[routing.rules]] entry, then routing.mode, then the egress verdict for "auto"), and the table of receiver
// replies that refuse this host for its reverse DNS or reputation (reroute.go), which routing.reroute sends via
// the smart host instead of bouncing. It does not dial, resolve or touch the queue. Because the decision is made
// again at every attempt, a configuration change applies to mail that is already queued.
package route

import (
	"strings"

	"ptrelay/config"
)

// Route is where a recipient's next attempt goes.
type Route string

const (
	Direct    Route = "direct"    // the recipient domain's MX hosts
	Smarthost Route = "smarthost" // the [smarthost] relay
)

// VerdictSource tells "auto" routing whether direct delivery is fit from this host (PTR, FCrDNS, DNSBL, port
// 25). known is false while no verdict could be computed (DNS unreachable at start-up, for instance); the
// dnscheck package provides the real implementation.
type VerdictSource interface {
	DirectOK() (ok, known bool)
}

// Decide returns the route for one recipient of a message from sender. Precedence:
//  1. the first [[routing.rules]] entry whose domains contain the recipient's domain, or whose senders contain
//     the sender address or the sender's domain (matching is case-insensitive; a rule with via = "smarthost" is
//     ignored while no smart host is configured, so a rule can never strand mail);
//  2. routing.mode "direct" or "smarthost";
//  3. "auto" (and the default ""): with no smart host, direct; with one, the verdict decides, and an unknown or
//     missing verdict means the smart host (DESIGN.md: while the verdict is unknown, auto uses the smart host).
func Decide(cfg *config.Config, sender, rcpt string, verdict VerdictSource) Route {
	hasSmarthost := cfg.Smarthost.Configured()
	if via, ok := Pinned(cfg, sender, rcpt); ok {
		return via
	}
	switch strings.ToLower(cfg.Routing.Mode) {
	case string(Direct):
		return Direct
	case string(Smarthost):
		if hasSmarthost {
			return Smarthost
		}
		return Direct
	}
	if !hasSmarthost {
		return Direct
	}
	if verdict == nil {
		return Smarthost
	}
	ok, known := verdict.DirectOK()
	if known && ok {
		return Direct
	}
	return Smarthost
}

// Pinned returns the route the first matching [[routing.rules]] entry gives the recipient (Decide's first step),
// and false when no rule matches. A recipient a rule pins to Direct is never rerouted to the smart host: an
// explicit rule wins over the reply of a receiver, as a Postfix transport entry does.
func Pinned(cfg *config.Config, sender, rcpt string) (Route, bool) {
	hasSmarthost := cfg.Smarthost.Configured()
	rdom := Domain(rcpt)
	sl := strings.ToLower(sender)
	sdom := Domain(sender)
	for _, r := range cfg.Routing.Rules {
		via := Route(strings.ToLower(r.Via))
		if via != Direct && via != Smarthost {
			continue // validation rejects these; never guess a route from a typo
		}
		if via == Smarthost && !hasSmarthost {
			continue
		}
		if matchDomain(r.Domains, rdom) || matchSender(r.Senders, sl, sdom) {
			return via, true
		}
	}
	return "", false
}

// Domain returns the lower-cased domain of an address ("" for an address without @, such as the null sender).
// A trailing dot is dropped so that "example.com." and "example.com" are the same destination.
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

func matchDomain(list []string, dom string) bool {
	if dom == "" {
		return false
	}
	for _, d := range list {
		if strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".") == dom {
			return true
		}
	}
	return false
}

// matchSender accepts an entry that is either a full address ("ceo@example.com") or a domain ("example.com",
// also written "@example.com").
func matchSender(list []string, addr, dom string) bool {
	if addr == "" {
		return false // the null sender matches no sender rule: bounces follow the mode
	}
	for _, s := range list {
		s = strings.ToLower(strings.TrimSpace(s))
		if strings.Contains(s, "@") && !strings.HasPrefix(s, "@") {
			if s == addr {
				return true
			}
			continue
		}
		if strings.TrimSuffix(strings.TrimPrefix(s, "@"), ".") == dom {
			return true
		}
	}
	return false
}
