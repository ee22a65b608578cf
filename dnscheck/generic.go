package dnscheck

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// genericWords mark PTR names that ISPs give to dynamic or residential lines. Receivers (and Spamhaus PBL)
// treat mail from such names as coming from an end-user machine, not a mail server.
var genericWords = map[string]bool{
	"dyn": true, "dynamic": true, "dynip": true, "dhcp": true, "pool": true, "pools": true,
	"dsl": true, "adsl": true, "vdsl": true, "xdsl": true, "sdsl": true, "dsldynamic": true,
	"cable": true, "catv": true, "hsd": true, "docsis": true,
	"ppp": true, "pppoe": true, "dialup": true, "dial": true, "dialin": true,
	"client": true, "clients": true, "customer": true, "cust": true, "cpe": true,
	"broadband": true, "bb": true, "res": true, "resi": true, "residential": true, "home": true,
	"user": true, "users": true, "subscriber": true, "sub": true, "nat": true, "cgnat": true,
	"dip": true, "dsl-dyn": true, "fios": true, "ftth": true, "fttx": true, "fttc": true, "fttp": true,
	"mobile": true, "wireless": true, "wifi": true, "lte": true, "3g": true, "4g": true, "5g": true,
	"unassigned": true, "unknown": true, "in-addr": true, "rev": true, "reverse": true, "rdns": true,
	"dhcp-pool": true, "dynamicip": true, "abo": true, "kabel": true, "dialpool": true,
}

// LooksGeneric reports whether a PTR name looks like an ISP's generic name for a dynamic or residential address
// rather than a mail server's: it embeds the address's digits (or its hex form) or contains words such as dyn,
// dhcp, pool, dsl, cable, ppp, client. ip may be the zero Addr. reason says what matched.
func LooksGeneric(name string, ip netip.Addr) (generic bool, reason string) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if r := embedsAddress(n, ip); r != "" {
		return true, r
	}
	labels := strings.Split(n, ".")
	// The last two labels are (roughly) the registered domain: a company called dynamic-consulting.example is
	// not a dynamic line. Without a public-suffix list, .co.uk-style domains leave one label of noise.
	if len(labels) > 2 {
		labels = labels[:len(labels)-2]
	} else {
		labels = labels[:0]
	}
	for _, l := range labels {
		for _, tok := range strings.FieldsFunc(l, func(r rune) bool { return r == '-' || r == '_' }) {
			w := strings.TrimRight(tok, "0123456789")
			if genericWords[w] || genericWords[tok] {
				return true, fmt.Sprintf("contains %q", tok)
			}
		}
	}
	return false, ""
}

// embedsAddress looks for ip's octets in the name: three or more of them in a row, in either order
// (host-203-0-113-5, 5.113.0.203.dyn, c-73-158-1-2), zero-padded and run together (203000113005), or as
// hexadecimal (p5B0C1D2E, ip5f5a1b2c). Any four numbers up to 255 in a row count too: the name may be left
// over from an address the ISP gave us before.
func embedsAddress(n string, ip netip.Addr) string {
	nums := numberGroups(n)
	anyAddr := ""
	if longestOctetRun(nums) >= 4 {
		anyAddr = "contains an IPv4 address"
	}
	if !ip.IsValid() {
		return anyAddr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		o := ip.As4()
		fwd := []int{int(o[0]), int(o[1]), int(o[2]), int(o[3])}
		rev := []int{fwd[3], fwd[2], fwd[1], fwd[0]}
		for _, seq := range [][]int{fwd[:3], fwd[1:], rev[:3], rev[1:]} {
			if containsRun(nums, seq) {
				return "contains the digits of " + ip.String()
			}
		}
		if strings.Contains(n, fmt.Sprintf("%03d%03d%03d%03d", o[0], o[1], o[2], o[3])) ||
			strings.Contains(n, fmt.Sprintf("%02x%02x%02x%02x", o[0], o[1], o[2], o[3])) {
			return "contains " + ip.String() + " in another notation"
		}
		return anyAddr
	}
	// IPv6: the low 64 bits (the interface identifier) in hex, with or without separators.
	b := ip.As16()
	var groups []string
	for i := 8; i < 16; i += 2 {
		groups = append(groups, strconv.FormatUint(uint64(b[i])<<8|uint64(b[i+1]), 16))
	}
	flat := strings.NewReplacer("-", "", ".", "", ":", "").Replace(n)
	full := fmt.Sprintf("%04s%04s%04s%04s", groups[0], groups[1], groups[2], groups[3])
	full = strings.ReplaceAll(full, " ", "0")
	if strings.Contains(flat, full) || strings.Contains(n, strings.Join(groups, "-")) {
		return "contains the digits of " + ip.String()
	}
	return anyAddr
}

// numberGroups returns the decimal numbers of n, grouped when only one separator (- . _) stands between them:
// "c-73-158-1-2.hsd1" gives [[73 158 1 2] [1]]. A number too long to be an octet is -1.
func numberGroups(n string) [][]int {
	var groups [][]int
	var cur []int
	i := 0
	for i < len(n) {
		if isDigit(n[i]) {
			j := i
			for j < len(n) && isDigit(n[j]) {
				j++
			}
			v, err := strconv.Atoi(n[i:j])
			if err != nil || j-i > 3 {
				v = -1
			}
			cur = append(cur, v)
			i = j
			continue
		}
		// A lone separator between two numbers keeps the group going; anything else ends it.
		joins := strings.IndexByte("-._", n[i]) >= 0 && i > 0 && isDigit(n[i-1]) && i+1 < len(n) && isDigit(n[i+1])
		if !joins && len(cur) > 0 {
			groups = append(groups, cur)
			cur = nil
		}
		i++
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

func longestOctetRun(groups [][]int) int {
	best := 0
	for _, g := range groups {
		cur := 0
		for _, v := range g {
			if v >= 0 && v <= 255 {
				cur++
				best = max(best, cur)
			} else {
				cur = 0
			}
		}
	}
	return best
}

func containsRun(groups [][]int, seq []int) bool {
	for _, nums := range groups {
		for i := 0; i+len(seq) <= len(nums); i++ {
			match := true
			for j, v := range seq {
				if nums[i+j] != v {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

// GenericCheck turns LooksGeneric into a blocking check: a generic PTR name makes receivers treat us as a
// dynamic end-user address.
func GenericCheck(name string, ip netip.Addr, hostname string) Check {
	c := Check{ID: "generic", Title: "PTR name does not look dynamic or generic", Blocking: true}
	if g, why := LooksGeneric(name, ip); g {
		c.Status = StatusFail
		c.Detail = fmt.Sprintf("%s looks like an ISP's name for a dynamic or residential line (%s)", name, why)
		c.Fix = fmt.Sprintf("Ask your ISP for a static IP with the PTR set to %s, or send through the smart host.",
			wantName(hostname))
		return c
	}
	c.Status, c.Detail = StatusPass, name
	return c
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
