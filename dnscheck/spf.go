package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPFResult is an RFC 7208 2.6 result.
type SPFResult string

const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// RFC 7208 4.6.4: at most 10 terms that cause DNS lookups, at most 2 of them "void" (no answer), and at most
// 10 MX names or PTR names examined per mechanism.
const (
	spfMaxLookups = 10
	spfMaxVoid    = 2
	spfMaxNames   = 10
)

// SPFOutcome is the evaluation of a domain's SPF policy for one address.
type SPFOutcome struct {
	Result  SPFResult
	Matched string // the term that decided, e.g. "include:_spf.isp.example" or "-all"; "" when none matched
	Record  string // the top-level record
	Detail  string // why, for temperror and permerror
	Lookups int    // DNS-querying terms evaluated
}

// EvaluateSPF answers "may ip send mail for domain?" with the SPF record of domain (RFC 7208 check_host()).
// The sender is taken to be postmaster@domain and the HELO name domain: `ptrelay check` asks about a whole
// domain, not one message.
func EvaluateSPF(ctx context.Context, r Lookuper, ip netip.Addr, domain string) SPFOutcome {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	e := &spfEval{r: r, ip: ip.Unmap(), sender: "postmaster@" + domain, helo: domain}
	out := e.check(ctx, domain, 0)
	out.Lookups = e.lookups
	return out
}

type spfEval struct {
	r            Lookuper
	ip           netip.Addr
	sender, helo string
	lookups      int
	voids        int
}

var errSPFLimit = errors.New("more than 10 DNS-querying terms (RFC 7208 4.6.4)")

func (e *spfEval) count() error {
	e.lookups++
	if e.lookups > spfMaxLookups {
		return errSPFLimit
	}
	return nil
}

func (e *spfEval) void() error {
	e.voids++
	if e.voids > spfMaxVoid {
		return errors.New("more than 2 lookups without an answer (RFC 7208 4.6.4)")
	}
	return nil
}

// spfRecord fetches the single "v=spf1" TXT record of domain.
func (e *spfEval) spfRecord(ctx context.Context, domain string) (string, SPFOutcome) {
	txts, err := e.r.LookupTXT(ctx, domain)
	if errors.Is(err, ErrTemporary) {
		return "", SPFOutcome{Result: SPFTempError, Detail: err.Error()}
	}
	var recs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", SPFOutcome{Result: SPFNone, Detail: "no SPF record at " + domain}
	case 1:
		return recs[0], SPFOutcome{}
	}
	return "", SPFOutcome{Result: SPFPermError, Detail: fmt.Sprintf("%d SPF records at %s (RFC 7208 4.5: one only)", len(recs), domain)}
}

func (e *spfEval) check(ctx context.Context, domain string, depth int) SPFOutcome {
	if depth > spfMaxLookups {
		return SPFOutcome{Result: SPFPermError, Detail: errSPFLimit.Error()}
	}
	rec, bad := e.spfRecord(ctx, domain)
	if rec == "" {
		return bad
	}
	out := SPFOutcome{Record: rec}
	redirect := ""
	for _, term := range strings.Fields(rec)[1:] {
		if name, value, ok := spfModifier(term); ok {
			if name == "redirect" {
				if redirect != "" {
					return e.perm(out, "two redirect modifiers")
				}
				redirect = value
			}
			continue // exp= and unknown modifiers do not change the result (RFC 7208 6)
		}
		result := SPFPass
		mech := term
		switch term[0] {
		case '+':
			mech = term[1:]
		case '-':
			result, mech = SPFFail, term[1:]
		case '~':
			result, mech = SPFSoftFail, term[1:]
		case '?':
			result, mech = SPFNeutral, term[1:]
		}
		match, sub := e.mechanism(ctx, domain, mech, depth)
		if sub.Result == SPFTempError || sub.Result == SPFPermError {
			sub.Record = rec
			if sub.Matched == "" {
				sub.Matched = term
			}
			return sub
		}
		if match {
			out.Result, out.Matched = result, term
			return out
		}
	}
	if redirect != "" {
		if err := e.count(); err != nil {
			return e.perm(out, err.Error())
		}
		target, err := e.expand(redirect, domain)
		if err != nil {
			return e.perm(out, err.Error())
		}
		sub := e.check(ctx, target, depth+1)
		if sub.Result == SPFNone {
			return e.perm(out, "redirect="+target+" has no SPF record")
		}
		if sub.Matched != "" {
			sub.Matched = "redirect=" + target + " " + sub.Matched
		}
		sub.Record = rec
		return sub
	}
	out.Result = SPFNeutral
	return out
}

func (e *spfEval) perm(out SPFOutcome, why string) SPFOutcome {
	out.Result, out.Detail = SPFPermError, why
	return out
}

// spfModifier recognises name=value terms (RFC 7208 4.6.1).
func spfModifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 || strings.ContainsAny(term[:i], ":/") {
		return "", "", false
	}
	return strings.ToLower(term[:i]), term[i+1:], true
}

// mechanism evaluates one mechanism without its qualifier. A non-empty Result in the outcome is an error.
func (e *spfEval) mechanism(ctx context.Context, domain, mech string, depth int) (bool, SPFOutcome) {
	name, arg := mech, ""
	if i := strings.IndexAny(mech, ":/"); i >= 0 {
		name, arg = mech[:i], mech[i:]
	}
	name = strings.ToLower(name)
	perm := func(format string, a ...any) (bool, SPFOutcome) {
		return false, SPFOutcome{Result: SPFPermError, Detail: fmt.Sprintf(format, a...)}
	}
	switch name {
	case "all":
		if arg != "" {
			return perm("%q takes no argument", mech)
		}
		return true, SPFOutcome{}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return perm("%s needs an address", mech)
		}
		p, err := parsePrefix(arg[1:], name == "ip4")
		if err != nil {
			return perm("%s: %v", mech, err)
		}
		return p.Contains(e.ip), SPFOutcome{}
	case "include", "exists", "a", "mx", "ptr":
	default:
		return perm("unknown mechanism %q", mech)
	}

	if err := e.count(); err != nil {
		return perm("%v", err)
	}
	spec, cidr4, cidr6, err := splitDomainCIDR(arg)
	if err != nil {
		return perm("%s: %v", mech, err)
	}
	target := domain
	if spec != "" {
		if target, err = e.expand(spec, domain); err != nil {
			return perm("%s: %v", mech, err)
		}
	} else if name == "include" || name == "exists" {
		return perm("%s needs a domain", mech)
	}
	switch name {
	case "include":
		sub := e.check(ctx, target, depth+1)
		switch sub.Result {
		case SPFPass:
			return true, SPFOutcome{}
		case SPFTempError, SPFPermError:
			return false, sub
		case SPFNone:
			return perm("include:%s has no SPF record", target)
		}
		return false, SPFOutcome{}
	case "exists":
		addrs, err := e.r.LookupA(ctx, target)
		return e.addrMatch(addrs, err, netip.Prefix{}, netip.Prefix{}, true)
	case "a":
		addrs, err := e.lookupFamily(ctx, target)
		return e.addrMatch(addrs, err, cidr4, cidr6, false)
	case "mx":
		mxs, err := e.r.LookupMX(ctx, target)
		if errors.Is(err, ErrTemporary) {
			return false, SPFOutcome{Result: SPFTempError, Detail: err.Error()}
		}
		if err != nil || (len(mxs) == 1 && mxs[0].Implicit) {
			// SPF uses no implicit MX (RFC 7208 5.4): no MX records, no match.
			if verr := e.void(); verr != nil {
				return perm("%v", verr)
			}
			return false, SPFOutcome{}
		}
		if len(mxs) > spfMaxNames {
			return perm("%s has more than %d MX records", target, spfMaxNames)
		}
		for _, mx := range mxs {
			addrs, err := e.lookupFamily(ctx, mx.Host)
			if errors.Is(err, ErrTemporary) {
				return false, SPFOutcome{Result: SPFTempError, Detail: err.Error()}
			}
			if m, _ := e.addrMatch(addrs, nil, cidr4, cidr6, false); m {
				return true, SPFOutcome{}
			}
		}
		return false, SPFOutcome{}
	default: // ptr (RFC 7208 5.5; "do not use", but still published)
		names, err := e.r.LookupPTR(ctx, e.ip)
		if errors.Is(err, ErrTemporary) || err != nil {
			return false, SPFOutcome{} // PTR failures mean no match, not an error (5.5)
		}
		for _, n := range names[:min(len(names), spfMaxNames)] {
			if !InDomain(n, target) {
				continue
			}
			addrs, err := e.lookupFamily(ctx, n)
			if err == nil {
				if m, _ := e.addrMatch(addrs, nil, netip.Prefix{}, netip.Prefix{}, false); m {
					return true, SPFOutcome{}
				}
			}
		}
		return false, SPFOutcome{}
	}
}

func (e *spfEval) lookupFamily(ctx context.Context, host string) ([]netip.Addr, error) {
	if e.ip.Is4() {
		return e.r.LookupA(ctx, host)
	}
	return e.r.LookupAAAA(ctx, host)
}

// addrMatch compares addrs with our address under the mechanism's prefix lengths; anyAddr (exists) matches on
// any answer at all.
func (e *spfEval) addrMatch(addrs []netip.Addr, err error, cidr4, cidr6 netip.Prefix, anyAddr bool) (bool, SPFOutcome) {
	if errors.Is(err, ErrTemporary) {
		return false, SPFOutcome{Result: SPFTempError, Detail: err.Error()}
	}
	if err != nil || len(addrs) == 0 {
		if verr := e.void(); verr != nil {
			return false, SPFOutcome{Result: SPFPermError, Detail: verr.Error()}
		}
		return false, SPFOutcome{}
	}
	if anyAddr {
		return true, SPFOutcome{}
	}
	for _, a := range addrs {
		bits := e.ip.BitLen()
		if a.Is4() && cidr4.IsValid() {
			bits = cidr4.Bits()
		} else if a.Is6() && cidr6.IsValid() {
			bits = cidr6.Bits()
		}
		if p, err := a.Unmap().Prefix(bits); err == nil && FamilyOf(a) == FamilyOf(e.ip) && p.Contains(e.ip) {
			return true, SPFOutcome{}
		}
	}
	return false, SPFOutcome{}
}

// splitDomainCIDR splits ":domain/24//64" (each part optional) into its parts.
func splitDomainCIDR(arg string) (spec string, cidr4, cidr6 netip.Prefix, err error) {
	if strings.HasPrefix(arg, ":") {
		arg = arg[1:]
		i := strings.IndexByte(arg, '/')
		if i < 0 {
			return arg, cidr4, cidr6, nil
		}
		spec, arg = arg[:i], arg[i:]
		if spec == "" {
			return "", cidr4, cidr6, errors.New("empty domain")
		}
	}
	if arg == "" {
		return spec, cidr4, cidr6, nil
	}
	if i := strings.Index(arg, "//"); i >= 0 {
		n, err := strconv.Atoi(arg[i+2:])
		if err != nil || n < 0 || n > 128 {
			return "", cidr4, cidr6, fmt.Errorf("bad IPv6 prefix length %q", arg[i+2:])
		}
		cidr6 = netip.PrefixFrom(netip.IPv6Unspecified(), n)
		arg = arg[:i]
	}
	if arg != "" {
		if !strings.HasPrefix(arg, "/") {
			return "", cidr4, cidr6, fmt.Errorf("bad prefix %q", arg)
		}
		n, err := strconv.Atoi(arg[1:])
		if err != nil || n < 0 || n > 32 {
			return "", cidr4, cidr6, fmt.Errorf("bad IPv4 prefix length %q", arg[1:])
		}
		cidr4 = netip.PrefixFrom(netip.IPv4Unspecified(), n)
	}
	return spec, cidr4, cidr6, nil
}

func parsePrefix(s string, v4 bool) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return p, err
	}
	if p.Addr().Is4() != v4 {
		return p, errors.New("wrong address family")
	}
	return p.Masked(), nil
}

// CheckSPF says whether the SPF record of domain authorises ip, as a non-blocking check (SPF is fixed in the
// domain's DNS; neither route choice repairs it). who names the sender for the text, e.g. "the egress IP".
func CheckSPF(ctx context.Context, r Lookuper, domain string, ip netip.Addr, who string) Check {
	domain = strings.TrimSuffix(domain, ".")
	out := EvaluateSPF(ctx, r, ip, domain)
	return spfCheck(domain, who+" "+ip.Unmap().String(), out, spfMechanismFor(ip))
}

// CheckSPFHost says whether the SPF record of domain authorises every address of host (the smart host).
func CheckSPFHost(ctx context.Context, r Lookuper, domain, host string) Check {
	domain = strings.TrimSuffix(domain, ".")
	c := Check{ID: "spf:" + domain, Title: fmt.Sprintf("SPF of %s authorises the smart host %s", domain, host)}
	addrs, err := ResolveHost(ctx, r, host) // an IP address is not looked up
	if err != nil {
		c.Status, c.Detail = StatusTempError, err.Error()
		if !errors.Is(err, ErrTemporary) {
			c.Status = StatusPermError
		}
		c.Fix = "Check the address of this smart host in [[smarthosts]]: its name does not resolve."
		return c
	}
	for _, a := range addrs {
		out := EvaluateSPF(ctx, r, a, domain)
		if out.Result != SPFPass {
			sc := spfCheck(domain, "the smart host "+host+" ("+a.String()+")", out,
				"include:<the SPF domain your provider documents for "+host+">")
			sc.Title = c.Title
			return sc
		}
	}
	c.Status, c.Detail = StatusPass, fmt.Sprintf("%s (%s) pass", host, joinAddrs(addrs))
	return c
}

func spfMechanismFor(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return "ip4:" + ip.Unmap().String()
	}
	return "ip6:" + ip.String()
}

func spfCheck(domain, who string, out SPFOutcome, add string) Check {
	c := Check{ID: "spf:" + domain, Title: fmt.Sprintf("SPF of %s authorises %s", domain, who)}
	detail := string(out.Result)
	if out.Matched != "" {
		detail += " (" + out.Matched + ")"
	}
	if out.Detail != "" {
		detail += ": " + out.Detail
	}
	c.Detail = detail
	switch out.Result {
	case SPFPass:
		c.Status = StatusPass
	case SPFNone:
		c.Status = StatusFail
		c.Fix = fmt.Sprintf("Publish a TXT record at %s: \"v=spf1 %s ~all\".", domain, add)
	case SPFTempError:
		c.Status = StatusTempError
		c.Fix = "Check that the DNS resolvers answer, then run the check again."
	case SPFPermError:
		c.Status = StatusPermError
		c.Fix = fmt.Sprintf("Repair the SPF record of %s (%s); receivers treat a broken record as a failure.", domain, out.Detail)
	default:
		c.Status = StatusFail
		c.Fix = fmt.Sprintf("Add %s to the SPF record of %s, before its \"all\".", add, domain)
	}
	return c
}
