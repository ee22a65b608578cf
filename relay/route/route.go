// Package route decides, per recipient and per delivery attempt, whether mail goes straight to the recipient
// domain's MX hosts or through the configured smart host. It owns the order of precedence (the first matching
// [[routing.rules]] entry, then routing.mode, then the egress verdict for "auto"), and the table of receiver
// replies that refuse this host for its reverse DNS or reputation (reroute.go), which routing.reroute sends via
// the smart host instead of bouncing. It does not dial, resolve or touch the queue. Because the decision is made
// again at every attempt, a configuration change applies to mail that is already queued.
package route

import (
	"slices"
	"strings"

	"ptrelay/config"
	"ptrelay/dnscheck"
)

// Route is where a recipient's next attempt goes.
type Route string

const (
	Direct    Route = "direct"    // the recipient domain's MX hosts
	Smarthost Route = "smarthost" // the [[smarthosts]] list (or one host of it, see Policy.PinnedHost)
)

// VerdictSource tells "auto" routing whether direct delivery is fit from this host (PTR, FCrDNS, DNSBL, port
// 25). known is false while no verdict could be computed (DNS unreachable at start-up, for instance); the
// dnscheck package provides the real implementation.
type VerdictSource interface {
	DirectOK() (ok, known bool)
}

// Rechecker is a VerdictSource that can be asked to judge again now: a direct attempt refused for this host's
// reputation means the verdict that sent the mail direct was wrong or stale. dnscheck.Checker is one.
type Rechecker interface {
	Recheck()
}

// FamilyVerdicts is a VerdictSource that judges each address family of the egress on its own: direct delivery
// then uses the families found fit (an IPv6 address without a PTR record is left out, IPv4 is used).
// dnscheck.Checker is one.
type FamilyVerdicts interface {
	DirectFamilies() []dnscheck.Family
}

// The checker the daemon passes to delivery is all three; a method renamed there fails the build here.
var (
	_ VerdictSource  = (*dnscheck.Checker)(nil)
	_ Rechecker      = (*dnscheck.Checker)(nil)
	_ FamilyVerdicts = (*dnscheck.Checker)(nil)
)

// Policy is what routing decisions need from the configuration, read once by NewPolicy: a reload builds a new
// Policy and the caller swaps it whole.
type Policy struct {
	// Mode is routing.mode resolved (never RoutingDefault): with no smart host, "smarthost" means direct.
	Mode config.RoutingMode
	// Smarthost: at least one smart host is configured.
	Smarthost bool
	// Reroute: routing.reroute applies, i.e. it is on, a smart host exists and the mode lets direct delivery fall
	// back (auto or direct).
	Reroute bool
	Rules   []Rule
}

// Rule is one [[routing.rules]] entry with its lists normalised: domains lower-cased without a trailing dot,
// senders lower-cased with "@example.com" written as "example.com".
type Rule struct {
	Domains []string
	Senders []string
	Via     Route
	// Host is the one smart host of via = "smarthost:NAME" ("" for the list): the mail never goes to another.
	Host string
}

// NewPolicy reads the routing keys of a validated configuration. A rule with via = "smarthost" is left out while
// no smart host is configured, so a rule can never strand mail; a rule with an unknown via (which validation
// refuses) is left out rather than guessed.
func NewPolicy(cfg *config.Config) *Policy {
	p := &Policy{Mode: cfg.EffectiveRoutingMode(), Smarthost: cfg.HasSmarthosts()}
	if p.Mode == config.RoutingSmarthost && !p.Smarthost {
		p.Mode = config.RoutingDirect
	}
	p.Reroute = cfg.Routing.Reroute && p.Smarthost && p.Mode != config.RoutingSmarthost
	for _, r := range cfg.Routing.Rules {
		var via Route
		host, pinned := r.Via.SmarthostName()
		switch {
		case r.Via == config.ViaDirect:
			via = Direct
		case r.Via.Smarthost():
			if !p.Smarthost || pinned && cfg.SmarthostNamed(host) == nil {
				continue
			}
			via = Smarthost
		default:
			continue
		}
		rule := Rule{Via: via, Host: host}
		for _, d := range r.Domains {
			rule.Domains = append(rule.Domains, strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), "."))
		}
		for _, s := range r.Senders {
			s = strings.ToLower(strings.TrimSpace(s))
			if !strings.Contains(s, "@") || strings.HasPrefix(s, "@") {
				s = strings.TrimSuffix(strings.TrimPrefix(s, "@"), ".") // a domain
			}
			rule.Senders = append(rule.Senders, s)
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

// Decide returns the route for one recipient of a message from sender. Precedence:
//  1. the first rule whose domains contain the recipient's domain, or whose senders contain the sender address
//     or the sender's domain (matching is case-insensitive);
//  2. routing.mode "direct" or "smarthost";
//  3. "auto": the verdict decides, and an unknown or missing verdict means the smart host (while the egress
//     verdict is unknown, auto uses the smart host).
func Decide(p *Policy, sender, rcpt string, verdict VerdictSource) Route {
	if via, ok := p.Pinned(sender, rcpt); ok {
		return via
	}
	switch p.Mode {
	case config.RoutingDirect:
		return Direct
	case config.RoutingSmarthost:
		return Smarthost
	}
	if !p.Smarthost {
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

// Pinned returns the route the first matching rule gives the recipient (Decide's first step), and false when no
// rule matches. A recipient a rule pins to Direct is never rerouted to the smart host: an explicit rule wins over
// the reply of a receiver, as a Postfix transport entry does.
func (p *Policy) Pinned(sender, rcpt string) (Route, bool) {
	if r := p.match(sender, rcpt); r != nil {
		return r.Via, true
	}
	return "", false
}

// PinnedHost returns the smart host the first matching rule names with via = "smarthost:NAME", or "" (no rule,
// another via, or the whole list).
func (p *Policy) PinnedHost(sender, rcpt string) string {
	if r := p.match(sender, rcpt); r != nil && r.Via == Smarthost {
		return r.Host
	}
	return ""
}

func (p *Policy) match(sender, rcpt string) *Rule {
	rdom := Domain(rcpt)
	sl := strings.ToLower(sender)
	sdom := Domain(sender)
	for i := range p.Rules {
		r := &p.Rules[i]
		if (rdom != "" && slices.Contains(r.Domains, rdom)) || matchSender(r.Senders, sl, sdom) {
			return r
		}
	}
	return nil
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

// matchSender accepts an entry that is either a full address ("ceo@example.com") or a domain ("example.com"),
// as NewPolicy normalised them.
func matchSender(list []string, addr, dom string) bool {
	if addr == "" {
		return false // the null sender matches no sender rule: bounces follow the mode
	}
	for _, s := range list {
		if strings.Contains(s, "@") {
			if s == addr {
				return true
			}
		} else if s == dom {
			return true
		}
	}
	return false
}
