package route

import (
	"regexp"
	"strconv"
	"strings"

	"ptrelay/relay/smtpstatus"
)

// Kind says whose problem a refusal is.
type Kind int

const (
	// None: not a refusal of this host or of the sender domain's authentication (a success, a full mailbox, an
	// unknown user, a greylisting 450...): the delivery side's usual rules apply.
	None Kind = iota
	// Reputation: the receiver refuses the IP this host sends from (no PTR, no FCrDNS, a dynamic range such as
	// the Spamhaus PBL, a blocklist, a bad reputation, a blocklisted EHLO name). Another egress path fixes it:
	// with routing.reroute the smart host carries the mail at once.
	Reputation
	// SenderAuth: the sender domain's own SPF, DKIM or DMARC failed. Another egress path does not fix that (a
	// smart host that SPF does not authorise makes it worse); the sender domain's DNS records do, so the mail
	// is never rerouted and the DSN says which record to fix.
	SenderAuth
)

func (k Kind) String() string {
	switch k {
	case Reputation:
		return "reputation"
	case SenderAuth:
		return "sender-auth"
	}
	return "none"
}

// Refusal is what Classify makes of one remote reply.
type Refusal struct {
	Kind   Kind
	Reason string // short and stable, for metrics and the log: "ptr", "pbl", "blocklist", "spf", "dmarc"...
	Fix    string // one sentence in ptrelay's words: which record or setting to fix
}

// Reroutable reports a refusal that the smart host can get past.
func (r Refusal) Reroutable() bool { return r.Kind == Reputation }

// Reasons and their fixes. The fix is ours, never the receiver's text: receivers word the same problem a dozen
// ways, the admin needs one sentence about the record to change.
var fixes = map[string]string{
	"ptr": "Ask the ISP that owns the egress IP to set its PTR (reverse DNS) record to a name that resolves back " +
		"to that IP, ideally ptrelay's hostname; `ptrelay check` shows which part is missing.",
	"pbl": "The egress IP is in a dynamic or residential range (such as the Spamhaus PBL) that large receivers " +
		"refuse: send through the smart host, or get a static IP with a PTR record in your domain from the ISP.",
	"blocklist": "The egress IP is on a blocklist: look it up at the list the reply names, remove the cause " +
		"(an infected machine, an open relay) and request delisting; the smart host carries mail meanwhile.",
	"helo": "The EHLO name (ptrelay's hostname) is on a domain blocklist: set hostname to a clean name in your " +
		"own domain that the egress IP's PTR record points to.",
	"reputation": "The receiver distrusts the egress IP (volume, complaints or no sending history): send " +
		"through the smart host, and follow the postmaster page the reply links to.",
	"spf": "The sender domain's SPF record (the TXT record starting with v=spf1) does not authorise the IP that " +
		"sent this message: add the egress IP, or the smart host's include:, to it; " +
		"`ptrelay check -domain <sender domain>` tests it.",
	"dkim": "The message carries no valid DKIM signature of the sender domain: let the mail server in front of " +
		"ptrelay sign outgoing mail and publish its key as the TXT record <selector>._domainkey.<sender domain>.",
	"spf-dkim": "The receiver requires SPF or DKIM to pass for the sender domain: authorise the sending IP (or " +
		"the smart host's include:) in the domain's SPF TXT record, or DKIM-sign the mail and publish its key; " +
		"`ptrelay check -domain <sender domain>` tests SPF.",
	"dmarc": "The sender domain's DMARC policy (the TXT record _dmarc.<sender domain>) made the receiver refuse " +
		"this message because neither SPF nor DKIM passed for the From domain: fix the SPF record for the " +
		"sending IP or DKIM signing for that domain.",
	"nullmx": "The sender domain publishes a null MX record (RFC 7505), which tells receivers it sends no mail: " +
		"give the sender domain a real MX record, or send from another domain.",
}

// rule is one row of the table. A row matches when its enhanced code (class ignored: "7.25" is 4.7.25 and
// 5.7.25) and its text pattern both match; an empty part matches anything.
type rule struct {
	kind   Kind
	reason string
	codes  []string       // "subject.detail", e.g. "7.25"
	text   *regexp.Regexp // on the normalised text (normalise)
}

// rules is the one classification of receiver replies, first match wins; every row is tested with a real reply
// (reroute_test.go names where each was seen). The order
// carries the policy:
//   - a DMARC refusal is named first: receivers send it under 5.7.1, 5.7.26, 5.7.509 and more;
//   - RFC 7372's X.7.25 (reverse DNS validation failed) is the receiver saying so explicitly;
//   - then the sender-authentication rows, before the reputation texts, so that a reply naming SPF or DKIM is
//     never rerouted: the smart host cannot fix a sender domain's records;
//   - the reputation texts last, and only for replies whose enhanced code is absent or of subject 0 or 7
//     (see textMayBeReputation): "550 5.1.1 user not listed in the directory" is not a blocklist.
//
// Receiver-specific tags ((S3150), [BL21], (DIAL), NotAuthorizedError...) are stable; the free-text patterns
// are kept to phrases that do not occur in replies about recipients or content.
var rules = []rule{
	// Sender authentication.
	{SenderAuth, "dmarc", []string{"7.509"}, nil}, // Microsoft: "does not pass DMARC verification"
	{SenderAuth, "dmarc", nil, re(`\bdmarc\b`)},

	// RFC 7372 2.3: reverse DNS validation failed.
	{Reputation, "ptr", []string{"7.25"}, nil},

	// RFC 7372 2.2 (DKIM X.7.20-22, SPF X.7.23-24, multiple X.7.26), RFC 7505 4.2 (X.7.27 null MX sender).
	{SenderAuth, "nullmx", []string{"7.27"}, nil},
	{SenderAuth, "spf-dkim", nil, re(`spf (and|or|&|/) ?dkim|dkim (and|or|&|/) ?spf`)},
	{SenderAuth, "spf", []string{"7.23", "7.24"}, nil},
	{SenderAuth, "dkim", []string{"7.20", "7.21", "7.22"}, nil},
	{SenderAuth, "spf-dkim", []string{"7.26"}, nil},
	{SenderAuth, "spf", nil, re(`\bspf\b|sender policy framework`)},
	{SenderAuth, "dkim", nil, re(`\bdkim\b|domainkeys`)},
	// Yahoo's 5.7.9 and Gmail's older texts name neither SPF nor DKIM on the first line.
	{SenderAuth, "spf-dkim", []string{"7.9"}, nil},
	{SenderAuth, "spf-dkim", nil, re(`\bunauthenticated\b|(fails|fail|failed) to pass authentication|` +
		`does not pass authentication|does not have authentication information`)},

	// Reputation: reverse DNS.
	{Reputation, "ptr", nil, re(`\bptr\b|reverse[- ]?dns|\brdns\b|no reverse|` +
		`cannot find your (host ?name|reverse)|reverse (lookup|mapping)|` +
		`does not properly resolve|(ip|client) must resolve|ipv6 sending guidelines|ipv6autherror|` +
		`ipv6_authentication_error`)},
	// Reputation: dynamic or residential ranges.
	{Reputation, "pbl", nil, re(`notauthorizederror|not authorized to send email directly|` +
		`dynamic(ally)?[- ]?(assigned )?(ip|address|range|pool)|dynamic \(residential\)|\bresidential\b|` +
		`dial-?up|transient ip|\(dial\)|\bdy-001\b|\bpbl\b|policy block list`)},
	// Reputation: the EHLO name on a domain blocklist (Microsoft S8001).
	{Reputation, "helo", nil, re(`\(s8001\)|helo (domain|name) is listed`)},
	// Reputation: IP blocklists, Microsoft's and Yahoo's tags among them.
	{Reputation, "blocklist", []string{"7.606"}, nil},
	{Reputation, "blocklist", nil, re(`spamhaus|spamcop|\bsorbs\b|barracuda|blocked using|\bdnsbl\b|\brbl\b|` +
		`block ?list|black ?list|blocklisted|\(s3140\)|\(s3150\)|\bsc-001\b|banned sending ip|` +
		`\[bl2\d\]|\[tss07\]|\(bl\)|block for spam|\bbl0000\d\d\b|c=bip\b|c=bl\b`)},
	// Reputation: temporary or general distrust of the IP (Gmail, Microsoft S3113, Yahoo TSS04/TS02).
	{Reputation, "reputation", nil, re(`\[tss0[46]\]|\[ts0[123]\]|\(s3113\)|\(nowl\)|ip reputation|bad reputation|` +
		`reputation of the sending ip|unsolicited mail originating from your ip|traffic not accepted from this ip`)},
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// enhancedInText finds an enhanced code written into the text, for replies whose code was not where go-smtp
// looks for it (Yahoo: "553 Mail from IP not allowed - 5.7.1 [BL23] ...").
var enhancedInText = regexp.MustCompile(`(?:^|[^0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?:[^0-9.]|$)`)

// Classify says whether a remote reply refuses this host (Reputation), the sender domain's authentication
// (SenderAuth), or neither (None). st is the reply as received: basic code, enhanced code (may be empty), and
// the full text with every line of a multi-line reply, joined with "\n" or " ". Only 4xx and 5xx replies are
// refusals. It never fails: any text yields a Refusal.
func Classify(st smtpstatus.Status) Refusal {
	if st.Code/100 != 4 && st.Code/100 != 5 {
		return Refusal{}
	}
	raw := st.Text
	if len(raw) > maxText {
		raw = raw[:maxText]
	}
	text := normalise(raw)
	code := st.Enhanced
	if code == (smtpstatus.Enhanced{}) {
		code = findEnhanced(raw)
	}
	sd := ""
	if code != (smtpstatus.Enhanced{}) {
		sd = strconv.Itoa(code[1]) + "." + strconv.Itoa(code[2])
	}
	textOK := textMayBeReputation(code)
	for _, r := range rules {
		if len(r.codes) > 0 && !contains(r.codes, sd) {
			continue
		}
		if r.text != nil {
			if r.kind == Reputation && !textOK {
				continue
			}
			if !r.text.MatchString(text) {
				continue
			}
		}
		return Refusal{Kind: r.kind, Reason: r.reason, Fix: fixes[r.reason]}
	}
	return Refusal{}
}

// textMayBeReputation: the reputation texts apply to replies without an enhanced code, or with subject 0
// (other) or 7 (security or policy, RFC 3463 3.8). A reply that names the recipient's mailbox (X.1.x, X.2.x) or
// the content (X.6.x) is about the message, whatever words it uses.
func textMayBeReputation(e smtpstatus.Enhanced) bool {
	return e == (smtpstatus.Enhanced{}) || e[1] == 0 || e[1] == 7
}

// normalise makes one lower-case line of a reply: the lines of a multi-line reply joined by a space, each
// stripped of a repeated "550-" or "5.7.1 " prefix (go-smtp strips them only when the first line has them), and
// runs of white space collapsed, so that a phrase wrapped across lines still matches.
func normalise(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if len(l) >= 4 && isDigits(l[:3]) && (l[3] == '-' || l[3] == ' ') {
			l = l[4:]
		}
		if m := enhancedPrefix.FindString(l); m != "" {
			l = l[len(m):]
		}
		lines[i] = l
	}
	s = strings.Join(lines, " ")
	// Prefixes flattened into the text by a log, a DSN or a greeting parsed line by line ("unusual rate of
	// 421-4.7.0 unsolicited mail", "does not have a 5.7.25 PTR record"), and
	// addresses, whose local parts are anybody's words ("<rdns@example.com>: user unknown").
	s = midPrefix.ReplaceAllString(s, " ")
	s = address.ReplaceAllString(s, " ")
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

var (
	midPrefix = regexp.MustCompile(`(^|\s)([245][0-9][0-9][- ])?[245]\.[0-9]{1,3}\.[0-9]{1,3}(\s|$)`)
	address   = regexp.MustCompile(`<[^<>\s]*@[^<>\s]*>`)
)

// maxText bounds the work per reply: go-smtp already limits a reply's size, this keeps the table's cost flat
// for any caller. Real refusals say what they mean in their first few hundred characters.
const maxText = 8 << 10

var enhancedPrefix = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}(\s|$)`)

func findEnhanced(text string) smtpstatus.Enhanced {
	m := enhancedInText.FindStringSubmatch(text)
	if m == nil {
		return smtpstatus.Enhanced{}
	}
	e, ok := smtpstatus.ParseEnhanced(m[1] + "." + m[2] + "." + m[3])
	if !ok {
		return smtpstatus.Enhanced{}
	}
	return e
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
