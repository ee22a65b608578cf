package delivery

import (
	"net/netip"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// Reroute (routing.reroute): a direct attempt refused for this host's reputation (route.Classify's Reputation:
// no PTR, a dynamic range, a blocklist...) goes through the smart host at once instead of bouncing or waiting
// the backoff; the recipient domain then stays on the smart host for smarthostMemory, and the egress verdict
// is rechecked. Refusals of the sender domain's SPF/DKIM/DMARC are never rerouted (the smart host cannot fix
// them): they take the ordinary path, with the record to fix in the log and the DSN.

// smarthostMemory is how long a domain that refused this host goes to the smart host without a direct try: a
// day, so a fixed PTR or a delisting is noticed the next day without hammering the receiver meanwhile.
const smarthostMemory = 24 * time.Hour

// canReroute: a direct attempt's reply that the smart host can get past, with rerouting on (route.Policy's
// Reroute).
func canReroute(cfg *Settings, rt route.Route, st smtpstatus.Status) bool {
	return rt == route.Direct && st.Code != 0 && cfg.Routing.Reroute && route.Classify(st).Reroutable()
}

// rerouteRecipient is canReroute for one recipient of a message from sender: never a recipient that a
// [[routing.rules]] entry pins with via = "direct" (the explicit rule wins, as a Postfix transport entry does).
func rerouteRecipient(cfg *Settings, rt route.Route, st smtpstatus.Status, sender, rcpt string) bool {
	return canReroute(cfg, rt, st) && !pinnedDirect(cfg, sender, rcpt)
}

func pinnedDirect(cfg *Settings, sender, rcpt string) bool {
	via, ok := cfg.Routing.Pinned(sender, rcpt)
	return ok && via == route.Direct
}

// stayOnSmarthost: the recipient, or its domain lately, was refused for this host's reputation (and no rule pins
// it to direct delivery).
func (s *Scheduler) stayOnSmarthost(cfg *Settings, sender string, r *queue.Recipient, now time.Time) bool {
	if !cfg.Routing.Reroute || pinnedDirect(cfg, sender, r.Addr) {
		return false
	}
	if until, ok := s.smarthostOnly.Load(route.Domain(r.Addr)); ok {
		if now.Before(until.(time.Time)) {
			return true
		}
		s.smarthostOnly.Delete(route.Domain(r.Addr))
	}
	for _, a := range r.History {
		if a.Outcome == string(Rerouted) {
			return true
		}
	}
	return false
}

// rerouted runs once the reroutes of a transaction are recorded: it remembers their domains, counts them,
// tells the admin what to fix (one line per transaction: its recipients share the reply), and asks the verdict
// to look again, since a refusal for rDNS or a listing means the verdict that sent this mail direct was wrong or
// stale.
func (s *Scheduler) rerouted(logs []Result) {
	warned := false
	for _, l := range logs {
		if l.Outcome != Rerouted {
			continue
		}
		ref := route.Classify(l.Status)
		s.smarthostOnly.Store(route.Domain(l.Rcpt), s.now().Add(smarthostMemory))
		if s.obs.OnReroute != nil {
			s.obs.OnReroute(ref.Reason)
		}
		if !warned {
			warned = true
			s.log.Warn("direct delivery refused for this host; rerouted via the smart host",
				"id", l.ID, "relay", l.Relay, "reason", ref.Reason, "reply", l.Reply(), "fix", ref.Fix)
		}
	}
	if rc, ok := s.verdict.(route.Rechecker); ok {
		rc.Recheck()
	}
}

// refusalFor is route.Classify for a reply received on route rt, as far as ptrelay's admin can act on it: a
// refusal of the sender domain's SPF/DKIM/DMARC on any route; a refusal of this host's reputation only on a
// direct attempt (a smart host refusing, or quoting its next hop refusing, its own address is not about ours).
func refusalFor(rt route.Route, st smtpstatus.Status) route.Refusal {
	if st.Code == 0 {
		return route.Refusal{}
	}
	ref := route.Classify(st)
	if ref.Kind == route.Reputation && rt != route.Direct {
		return route.Refusal{}
	}
	return ref
}

// directFamilies is the address families direct delivery may use: those whose egress verdict is direct-ok,
// when the verdict source knows (dnscheck.Checker). nil means any.
func (s *Scheduler) directFamilies() map[dnscheck.Family]bool {
	fs, ok := s.verdict.(route.FamilyVerdicts)
	if !ok {
		return nil
	}
	list := fs.DirectFamilies()
	if len(list) == 0 {
		return nil // no family is fit: the route decision handled that; do not strand the mail here
	}
	out := map[dnscheck.Family]bool{}
	for _, f := range list {
		out[f] = true
	}
	return out
}

func familyAllowed(fams map[dnscheck.Family]bool, a netip.Addr) bool {
	return fams == nil || fams[dnscheck.FamilyOf(a)]
}
