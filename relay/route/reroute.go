package route

import (
	"regexp"
	"strings"
)

// Refusal says why a receiver refused mail from this host itself (not the message or the recipient), so the
// smart host can carry it instead of a bounce (routing.reroute). It is the one place where the human text of
// remote replies is parsed (STYLE.md §4).
type Refusal struct {
	Reason string // "no PTR / FCrDNS", "dynamic IP (PBL)", "blocklist", ...
	Fix    string // one sentence for the admin
}

// reroutePatterns are receiver texts seen in the wild (research/peers.md §4), matched case-insensitively on the
// reply's enhanced code and text. Order matters only for the reason reported.
var reroutePatterns = []struct {
	re     *regexp.Regexp
	reason string
	fix    string
}{
	{regexp.MustCompile(`(^|\D)5\.7\.25(\D|$)|does not have a ptr record|ptr record|reverse dns|reverse-dns|\brdns\b|cannot find your hostname|does not properly resolve|sender ip must resolve|ipv6 sending guidelines`),
		"no PTR / FCrDNS", "Give the egress IP a PTR record whose name resolves back to it (ask the ISP), then run `ptrelay check`."},
	{regexp.MustCompile(`notauthorizederror|not authorized to send email directly|dynamically-assigned|dynamic ip|dialup|transient ip|dy-001|\bpbl\b`),
		"dynamic IP (PBL)", "The egress IP is listed as a dynamic/residential range: keep sending through the smart host."},
	{regexp.MustCompile(`spamhaus|blocked using|listed (by|in)|dnsbl|sorbs|block ?list|blacklist|\(s3150\)|\(s3140\)|sc-001|5\.7\.606|banned sending ip|\[bl2\d\]|\[tss0[67]\]|\[ts03\]|\(bl\)|\(nowl\)|\(dial\)`),
		"blocklist", "The egress IP is on a blocklist: request delisting (the reply names the list), and use the smart host meanwhile."},
}

// authRefusal matches refusals for the sender domain's own authentication (SPF, DKIM, DMARC): another egress
// path does not fix those, the DNS records of the sender domain do.
var authRefusal = regexp.MustCompile(`(^|\D)5\.7\.26(\D|$)|(^|\D)5\.7\.9(\D|$)|\bspf\b|\bdkim\b|\bdmarc\b|unauthenticated|authentication checks|authenticate with`)

// PolicyRefusal reports whether a direct delivery's reply (basic code, enhanced code such as "5.7.25", and
// text) refuses this host for its reputation or reverse DNS. A refusal for the sender's own SPF/DKIM/DMARC is
// never one: rerouting would hide a problem only the sender domain's records can fix.
func PolicyRefusal(code int, enhanced, text string) (Refusal, bool) {
	if code/100 != 4 && code/100 != 5 {
		return Refusal{}, false
	}
	s := strings.ToLower(enhanced + " " + text)
	if authRefusal.MatchString(s) {
		return Refusal{}, false
	}
	for _, p := range reroutePatterns {
		if p.re.MatchString(s) {
			return Refusal{Reason: p.reason, Fix: p.fix}, true
		}
	}
	return Refusal{}, false
}

// Rechecker is implemented by a VerdictSource that can recompute its verdict on demand; a reroute asks for it,
// since a refusal for rDNS or a listing means the verdict was wrong or went stale.
type Rechecker interface {
	Recheck()
}
