package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// DNSBLName returns the name to query for ip in zone (RFC 5782 2.1, 2.4): the IPv4 octets or the 32 IPv6 nibbles
// in reverse order, then the zone. 192.0.2.99 in zen.spamhaus.org is 99.2.0.192.zen.spamhaus.org. An
// IPv4-mapped IPv6 address is queried as IPv4.
func DNSBLName(ip netip.Addr, zone string) string {
	return reversed(ip.Unmap()) + dns.Fqdn(strings.TrimSuffix(zone, "."))
}

// reversed gives "4.3.2.1." for 1.2.3.4 and the reversed nibbles for any IPv6 address, mapped ones included
// (the IPv6 test point ::ffff:7f00:2 must stay in nibble form).
func reversed(ip netip.Addr) string {
	var b strings.Builder
	if ip.Is4() {
		o := ip.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(o[i])) + ".")
		}
		return b.String()
	}
	const hex = "0123456789abcdef"
	a := ip.As16()
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	return b.String()
}

// DNSBLCode is what one return code of a DNS blocklist means.
type DNSBLCode struct {
	Code    netip.Addr
	Listed  bool   // the list names the address; false for refusals and for codes outside 127.0.0.0/8
	Dynamic bool   // the list says the address is in a dynamic / end-user range (Spamhaus PBL, SORBS DUL)
	Refused bool   // the list refused to answer (Spamhaus 127.255.255.x): nothing is known about the address
	Meaning string // e.g. "PBL: end-user (dynamic) range, maintained by the ISP"
}

// DecodeDNSBL says what a return code means. Spamhaus zones (the zone contains a "spamhaus" label) get their
// documented codes; any other 127.0.0.x is a generic listing. 127.255.255.x is never a listing: Spamhaus answers
// it when it refuses the query (public resolver, typo'd zone, too many queries), and no list uses it to list.
func DecodeDNSBL(zone string, code netip.Addr) DNSBLCode {
	code = code.Unmap()
	d := DNSBLCode{Code: code}
	if !code.Is4() {
		d.Meaning = "not an IPv4 return code: ignored"
		return d
	}
	o := code.As4()
	switch {
	case o[0] == 127 && o[1] == 255 && o[2] == 255:
		d.Refused = true
		switch o[3] {
		case 252:
			d.Meaning = "the query was refused: the zone name is wrong (typo)"
		case 254:
			d.Meaning = "the query was refused: queries through public or open resolvers are blocked"
		case 255:
			d.Meaning = "the query was refused: too many queries from this resolver"
		default:
			d.Meaning = "the query was refused"
		}
		return d
	case o[0] != 127 || o[1] != 0 || o[2] != 0:
		d.Meaning = "not a 127.0.0.x return code: ignored"
		return d
	}
	d.Listed = true
	if isSpamhaus(zone) {
		switch o[3] {
		case 2:
			d.Meaning = "SBL: Spamhaus Block List (spam source)"
		case 3:
			d.Meaning = "SBL CSS: snowshoe spam source"
		case 4, 5, 6, 7:
			d.Meaning = "XBL: exploited or infected host"
		case 9:
			d.Meaning = "SBL DROP: hijacked network"
		case 10:
			d.Dynamic, d.Meaning = true, "PBL: end-user (dynamic) range, listed by the ISP"
		case 11:
			d.Dynamic, d.Meaning = true, "PBL: end-user (dynamic) range, listed by Spamhaus"
		default:
			d.Meaning = "listed"
		}
		return d
	}
	d.Meaning = "listed"
	return d
}

func isSpamhaus(zone string) bool {
	for _, l := range dns.SplitDomainName(strings.ToLower(zone)) {
		if l == "spamhaus" {
			return true
		}
	}
	return false
}

// DNSBLResult is the answer of one blocklist about one address.
type DNSBLResult struct {
	Zone  string
	Codes []DNSBLCode
	Check Check
}

// CheckDNSBL asks zone whether ip is listed and turns the answer into a check: listed is a blocking fail (a PBL
// listing says the range is dynamic); a refusal is a non-blocking permerror ("cannot tell, use your own
// resolver"); a DNS failure a temperror. When ip is not listed, the list's test point (127.0.0.2, RFC 5782 5)
// must be: a list that does not answer for it is misspelt, dead or refusing us, so "not listed" means nothing.
func CheckDNSBL(ctx context.Context, r Lookuper, ip netip.Addr, zone string) DNSBLResult {
	zone = strings.TrimSuffix(zone, ".")
	res := DNSBLResult{Zone: zone}
	// The title states what was found, so a fail line reads "203.0.113.7 is listed in zen.spamhaus.org: PBL ...",
	// never "not listed in ...: listed".
	c := Check{ID: "dnsbl:" + zone, Title: fmt.Sprintf("%s not listed in %s", ip.Unmap(), zone), Blocking: true}
	codes, err := queryDNSBL(ctx, r, ip.Unmap(), zone)
	res.Codes = codes
	if errors.Is(err, ErrTemporary) {
		c.Title = fmt.Sprintf("%s in %s", ip.Unmap(), zone)
		c.Status, c.Detail = StatusTempError, err.Error()
		c.Fix = "Check that the DNS resolvers answer, then run the check again."
		res.Check = c
		return res
	}
	listed, refused, dynamic := summarize(codes)
	switch {
	case len(listed) > 0:
		c.Title = fmt.Sprintf("%s is listed in %s", ip.Unmap(), zone)
		c.Status, c.Detail = StatusFail, strings.Join(listed, "; ")
		for _, d := range codes {
			if d.Listed {
				c.Codes = append(c.Codes, d.Code)
			}
		}
		if dynamic {
			c.Fix = "The address is in a dynamic range that receivers refuse: send through the smart host, or get a static IP from your ISP and have it removed from the PBL."
		} else {
			c.Fix = fmt.Sprintf("Send through the smart host, find and fix the cause, then request removal at the operator of %s.", zone)
		}
	case len(refused) > 0:
		cannotTell(&c, strings.Join(refused, "; "))
	default:
		c.Status, c.Detail = StatusPass, "not listed"
		if why := testPointProblem(ctx, r, ip, zone); why != "" {
			cannotTell(&c, why)
		}
	}
	res.Check = c
	return res
}

func cannotTell(c *Check, why string) {
	c.Title = strings.Replace(c.Title, " not listed in ", " in ", 1)
	c.Status, c.Blocking = StatusPermError, false
	c.Detail = "cannot tell: " + why
	c.Fix = "Use your own resolver (not a public one such as 8.8.8.8) in dns.resolvers, check the zone name, or use a DNSBL subscription."
}

// queryDNSBL returns the decoded A records for ip (not unmapped) in zone; NXDOMAIN or no A records mean not listed
// (RFC 5782 2.1) and give no codes and no error.
func queryDNSBL(ctx context.Context, r Lookuper, ip netip.Addr, zone string) ([]DNSBLCode, error) {
	addrs, err := r.LookupA(ctx, reversed(ip)+dns.Fqdn(zone))
	if errors.Is(err, ErrTemporary) {
		return nil, err
	}
	var codes []DNSBLCode
	for _, a := range addrs {
		codes = append(codes, DecodeDNSBL(zone, a))
	}
	return codes, nil
}

func summarize(codes []DNSBLCode) (listed, refused []string, dynamic bool) {
	for _, d := range codes {
		switch {
		case d.Listed:
			listed = append(listed, fmt.Sprintf("%s (%s)", d.Meaning, d.Code))
			dynamic = dynamic || d.Dynamic
		case d.Refused:
			refused = append(refused, fmt.Sprintf("%s (%s)", d.Meaning, d.Code))
		}
	}
	return listed, refused, dynamic
}

// testPointProblem asks zone about its test point and says what is wrong, or "" when it is listed as it should
// be (or when the question failed temporarily: the "not listed" answer stands).
func testPointProblem(ctx context.Context, r Lookuper, ip netip.Addr, zone string) string {
	tp := netip.MustParseAddr("127.0.0.2")
	if !ip.Unmap().Is4() {
		tp = netip.MustParseAddr("::ffff:7f00:2")
	}
	codes, err := queryDNSBL(ctx, r, tp, zone)
	if err != nil {
		return ""
	}
	listed, refused, _ := summarize(codes)
	switch {
	case len(listed) > 0:
		return ""
	case len(refused) > 0:
		return strings.Join(refused, "; ")
	}
	return fmt.Sprintf("%s does not list its test point %s: the zone name is wrong, or the list does not answer this resolver", zone, tp)
}
