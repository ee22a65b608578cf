package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// maxPTRNames bounds the forward lookups of FCrDNS: an address with dozens of PTR records would otherwise make
// us do dozens of queries (mox's iprev stops at 10 as well).
const maxPTRNames = 10

// PTRResult is the reverse DNS of the egress address.
type PTRResult struct {
	Names []string // the PTR names
	// Verified is the first PTR name whose A/AAAA records include the address (forward-confirmed), or "".
	Verified string
	// Checks: ptr, fcrdns, then hostname and ptr-domain when a name is verified, then generic (on the verified
	// name, else the first PTR name).
	Checks []Check
}

// CheckPTR runs the reverse-DNS checks on ip: a PTR exists; a PTR name resolves back to ip (FCrDNS, as receivers
// such as Gmail require); the name is hostname (our EHLO name); it lies in domain (ours rather than the ISP's);
// it does not look generic. hostname and domain may be empty to skip those checks.
func CheckPTR(ctx context.Context, r Lookuper, ip netip.Addr, hostname, domain string) PTRResult {
	ip = ip.Unmap()
	var res PTRResult
	names, err := r.LookupPTR(ctx, ip)
	ptr := Check{ID: "ptr", Title: "PTR record of " + ip.String(), Blocking: true}
	switch {
	case errors.Is(err, ErrTemporary):
		ptr.Status, ptr.Detail = StatusTempError, err.Error()
		ptr.Fix = "Check that the DNS resolvers in dns.resolvers answer, then run the check again."
	case err != nil || len(names) == 0:
		ptr.Status, ptr.Detail = StatusPermError, "no PTR record for "+ip.String()
		ptr.Fix = fmt.Sprintf("Ask your ISP, who owns %s, to set its PTR record to %s.", ip, wantName(hostname))
	default:
		ptr.Status, ptr.Detail = StatusPass, strings.Join(names, ", ")
	}
	res.Names = names
	res.Checks = append(res.Checks, ptr)
	if ptr.Status != StatusPass {
		// Without names there is nothing to confirm: FCrDNS inherits the PTR's status (mox iprev does the same).
		res.Checks = append(res.Checks, Check{ID: "fcrdns", Title: "PTR name resolves back to " + ip.String(),
			Blocking: true, Status: ptr.Status, Detail: "no PTR name to confirm", Fix: ptr.Fix})
		return res
	}

	// Try the hostname first: with several PTR names, the one we greet with is the one that should be verified.
	names = slices.Clone(names)
	slices.SortStableFunc(names, func(a, b string) int {
		switch {
		case sameName(a, hostname) && !sameName(b, hostname):
			return -1
		case sameName(b, hostname) && !sameName(a, hostname):
			return 1
		}
		return 0
	})
	fc := fcrdns(ctx, r, ip, names)
	res.Checks = append(res.Checks, fc.check)
	res.Verified = fc.verified
	if res.Verified != "" {
		res.Checks = append(res.Checks, hostnameCheck(res.Verified, hostname, ip))
		if domain != "" {
			res.Checks = append(res.Checks, domainCheck(res.Verified, domain, hostname))
		}
		res.Checks = append(res.Checks, GenericCheck(res.Verified, ip, hostname))
	} else {
		res.Checks = append(res.Checks, GenericCheck(names[0], ip, hostname))
	}
	return res
}

type fcResult struct {
	check    Check
	verified string
}

// fcrdns resolves each PTR name and passes on the first whose addresses include ip.
func fcrdns(ctx context.Context, r Lookuper, ip netip.Addr, names []string) fcResult {
	c := Check{ID: "fcrdns", Title: "PTR name resolves back to " + ip.String(), Blocking: true}
	var seen []string
	temp := false
	for _, name := range names[:min(len(names), maxPTRNames)] {
		var addrs []netip.Addr
		var err error
		if ip.Is4() {
			addrs, err = r.LookupA(ctx, name)
		} else {
			addrs, err = r.LookupAAAA(ctx, name)
		}
		if errors.Is(err, ErrTemporary) {
			temp = true
			seen = append(seen, name+": "+err.Error())
			continue
		}
		if slices.Contains(addrs, ip) {
			c.Status, c.Detail = StatusPass, fmt.Sprintf("%s -> %s", name, ip)
			return fcResult{check: c, verified: name}
		}
		if err != nil {
			seen = append(seen, name+" has no address")
		} else {
			seen = append(seen, fmt.Sprintf("%s -> %s", name, joinAddrs(addrs)))
		}
	}
	if temp {
		c.Status = StatusTempError
		c.Detail = strings.Join(seen, "; ")
		c.Fix = "Check that the DNS resolvers answer, then run the check again."
		return fcResult{check: c}
	}
	c.Status = StatusFail
	c.Detail = strings.Join(seen, "; ") + ", not " + ip.String()
	c.Fix = fmt.Sprintf("Add an A/AAAA record %s -> %s, or have the PTR of %s changed to a name that resolves to it.",
		names[0], ip, ip)
	return fcResult{check: c}
}

func hostnameCheck(verified, hostname string, ip netip.Addr) Check {
	c := Check{ID: "hostname", Title: "PTR name is the hostname ptrelay greets with (EHLO)"}
	if generic, _ := LooksGeneric(verified, ip); generic && !sameName(verified, hostname) {
		// Greeting with the ISP's name for a dynamic line would only match a PTR that receivers refuse anyway:
		// the fix is a PTR in our own domain, never adopting this one.
		c.Status = StatusFail
		c.Detail = fmt.Sprintf("PTR name is %s (an ISP's generic name), hostname is %s", verified, dash(hostname))
		c.Fix = fmt.Sprintf("Keep hostname as your own mail host name and ask your ISP for a static IP whose PTR is "+
			"%s, with a matching A record; until then send through the smart host.", wantName(hostname))
		return c
	}
	switch {
	case hostname == "":
		c.Status, c.Detail = StatusFail, "hostname is not set; the PTR name is "+verified
		c.Fix = fmt.Sprintf("Set hostname = %q so that the EHLO name matches the PTR.", verified)
	case sameName(verified, hostname):
		c.Status, c.Detail = StatusPass, verified
	default:
		c.Status = StatusFail
		c.Detail = fmt.Sprintf("PTR name is %s, hostname is %s", verified, hostname)
		c.Fix = fmt.Sprintf("Set hostname = %q (the EHLO name that matches the PTR), or have the PTR changed to %s.",
			verified, hostname)
	}
	return c
}

func domainCheck(verified, domain, hostname string) Check {
	c := Check{ID: "ptr-domain", Title: "PTR name is in " + strings.TrimSuffix(domain, ".")}
	if InDomain(verified, domain) {
		c.Status, c.Detail = StatusPass, verified
		return c
	}
	c.Status = StatusFail
	c.Detail = fmt.Sprintf("PTR name %s is in the ISP's domain, not in %s", verified, strings.TrimSuffix(domain, "."))
	c.Fix = fmt.Sprintf("Ask your ISP to set the PTR to a host in your domain, such as %s, with a matching A record.",
		wantName(hostname))
	return c
}

// InDomain reports whether name is domain or below it (case-insensitive, trailing dots ignored).
func InDomain(name, domain string) bool {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	return d != "" && (n == d || strings.HasSuffix(n, "."+d))
}

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

func dash(s string) string {
	if s == "" {
		return "not set"
	}
	return s
}

func wantName(hostname string) string {
	if hostname == "" {
		return "your mail host name (e.g. mail.yourdomain.example)"
	}
	return hostname
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
