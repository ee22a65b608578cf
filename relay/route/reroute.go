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
	"helo": "The receiver refuses the EHLO name (ptrelay's hostname): set hostname to a fully-qualified name in " +
		"your own domain that has an A record for the egress IP, that the IP's PTR record points to, and that " +
		"is on no domain blocklist.",
	"sender-listed": "The sender domain is on a domain blocklist (such as the Spamhaus DBL), which another " +
		"sending path does not change and its DNS records do not cause: find why (a compromised mailbox or " +
		"website sending in its name), fix it, and request delisting from the list the reply names.",
	"reputation": "The receiver distrusts the egress IP (volume, complaints or no sending history): send " +
		"through the smart host, and follow the postmaster page the reply links to.",
	"spf": "The sender domain's SPF record (the TXT record starting with v=spf1) does not authorise the IP that " +
		"sent this message: add the egress IP, or the smart host's include:, to it; " +
		"`ptrelay check -domain <sender domain>` tests it.",
	"dkim": "The message carries no valid DKIM signature of <sender domain>: enable DKIM for <sender domain> in " +
		"ptrelay (a [[dkim.keys]] entry, its key made with `ptrelay dkim keygen`) and publish its TXT record; if " +
		"it is enabled, `ptrelay check -domain <sender domain>` shows what is wrong with the published key.",
	"spf-dkim": "The receiver requires SPF or DKIM to pass for <sender domain>: enable DKIM for <sender domain> in " +
		"ptrelay (`ptrelay dkim keygen`, then [[dkim.keys]]), which does not depend on the sending IP, or " +
		"authorise the sending IP (or the smart host's include:) in the domain's SPF TXT record; " +
		"`ptrelay check -domain <sender domain>` tests both.",
	"dmarc": "The DMARC policy of <sender domain> (the TXT record _dmarc.<sender domain>) made the receiver refuse " +
		"this message because neither SPF nor DKIM passed for the From domain: enable DKIM for <sender domain> " +
		"in ptrelay (`ptrelay dkim keygen`, then [[dkim.keys]]), or fix the SPF record for the sending IP; " +
		"`ptrelay check -domain <sender domain>` tests both.",
	"nullmx": "The sender domain publishes a null MX record (RFC 7505), which tells receivers it sends no mail: " +
		"give the sender domain a real MX record, or send from another domain.",
}

// rule is one row of the table. A row matches when its enhanced code (class ignored: "7.25" is 4.7.25 and
// 5.7.25) and its text pattern both match; an empty part matches anything. A row of kind None stops the walk: the
// reply names a block list or a policy, but not one about this host's address (a receiver's own resolver refused
// by Spamhaus, a URL in the message on a domain list, greylisting), so it is not rerouted.
type rule struct {
	kind   Kind
	reason string
	codes  []string       // "subject.detail", e.g. "7.25"
	text   *regexp.Regexp // on the normalised text (normalise)
	// anyCode: the text is unambiguous, so it applies whatever the enhanced code's subject (receivers put a
	// Spamhaus listing under 5.2.1 or 5.3.0, Postfix's HELO checks under 5.5.2); see textMayBeReputation.
	anyCode bool
	source  string // where the row's wording comes from
}

// rules is the one classification of receiver replies, first match wins. Each row names its source: providers'
// postmaster pages, Postfix's manual, and public collections of real bounces (ZoneMTA's config/bounces.txt,
// Sisimai's reason classes); testdata/replies/training.txt holds a real reply for the rows added from those,
// testdata/replies/heldout.txt replies the rows were not written from. The order carries the policy:
//   - a DMARC refusal is named first: receivers send it under 5.7.1, 5.7.26, 5.7.509 and more;
//   - RFC 7372's X.7.25 (reverse DNS validation failed) is the receiver saying so explicitly;
//   - then the sender-authentication rows, before the reputation texts, so that a reply naming SPF or DKIM is
//     never rerouted: the smart host cannot fix a sender domain's records;
//   - the EHLO name, then the sender domain on a domain list, then the block-list mentions that are not about
//     this host (stop rows), before any row that would read them as a listing of our address;
//   - the reputation texts last, and, unless the row is marked anyCode, only for replies whose enhanced code is
//     absent or of subject 0 or 7 (see textMayBeReputation): "550 5.1.1 user not listed in the directory" is
//     not a blocklist.
//
// Receiver-specific tags ((S3150), [BL21], (DIAL), (RTR:BB), OFR_999...) are stable; the free-text patterns are
// kept to phrases that do not occur in replies about recipients or content.
var rules = []rule{
	// Sender authentication.
	{kind: SenderAuth, reason: "dmarc", codes: []string{"7.509"}, source: "Microsoft NDR 5.7.509"},
	{kind: SenderAuth, reason: "dmarc", text: re(`\bdmarc\b`), source: "Gmail, Microsoft, iCloud replies"},

	// RFC 7372 2.3: reverse DNS validation failed.
	{kind: Reputation, reason: "ptr", codes: []string{"7.25"}, source: "RFC 7372 2.3; Gmail, Postfix 3.x"},

	// RFC 7372 2.2 (DKIM X.7.20-22, SPF X.7.23-24, multiple X.7.26), RFC 7505 4.2 (X.7.27 null MX sender).
	{kind: SenderAuth, reason: "nullmx", codes: []string{"7.27"}, source: "RFC 7505 4.2"},
	{kind: SenderAuth, reason: "spf-dkim", text: re(`spf (and|or|&|/) ?dkim|dkim (and|or|&|/) ?spf`), source: "Gmail 5.7.26"},
	{kind: SenderAuth, reason: "spf", codes: []string{"7.23", "7.24"}, source: "RFC 7372 2.2"},
	{kind: SenderAuth, reason: "dkim", codes: []string{"7.20", "7.21", "7.22"}, source: "RFC 7372 2.2"},
	{kind: SenderAuth, reason: "spf-dkim", codes: []string{"7.26"}, source: "RFC 7372 2.2"},
	{kind: SenderAuth, reason: "spf", text: re(`\bspf\b|sender policy framework`), source: "Microsoft 5.7.23, MailChannels, LaPoste, WEB.DE"},
	{kind: SenderAuth, reason: "dkim", text: re(`\bdkim\b|domainkeys`), source: "RFC 7372 wording; ForwardEmail"},
	// Yahoo's 5.7.9 and Gmail's older texts name neither SPF nor DKIM on the first line.
	{kind: SenderAuth, reason: "spf-dkim", codes: []string{"7.9"}, source: "Yahoo 5.7.9"},
	{kind: SenderAuth, reason: "spf-dkim", text: re(`\bunauthenticated\b|(fails|fail|failed) to pass authentication|` +
		`does not pass authentication|does not have authentication information`), source: "Gmail 5.7.26 wordings"},

	// The EHLO name: Postfix's reject_invalid/non_fqdn/unknown_helo_hostname ("Helo command rejected: ..."),
	// Microsoft's S8001 (the name on Spamhaus's DBL).
	{kind: Reputation, reason: "helo", text: re(`helo command rejected|\(s8001\)|helo (domain|name) is listed`), anyCode: true,
		source: "Postfix postconf(5) smtpd_helo_restrictions; Microsoft S8001"},

	// The sender domain on a domain block list (Postfix reject_rhsbl_sender): another egress does not change it.
	{kind: SenderAuth, reason: "sender-listed", text: re(`sender address[^;]{0,120}blocked using|sender domain is (black|block)listed`),
		source: "ZoneMTA config/bounces.txt (Postfix rhsbl sender reply)"},

	// Stop rows: a block list is named, but not for our address.
	{kind: None, text: re(`open resolver|/returnc/|query refused`),
		source: "Spamhaus return codes 127.255.255.x quoted by the receiver (simple-login/app#2675)"},
	{kind: None, text: re(`greylist`), source: "ZoneMTA config/bounces.txt (grey.rbl)"},
	{kind: None, text: re(`\buribl\b|\bsurbl\b|domain present in|\bdbl\b`),
		source: "iCloud (Spamhaus DBL on a URL), ZoneMTA config/bounces.txt (multi.uribl.com)"},

	// Reputation: reverse DNS.
	{kind: Reputation, reason: "ptr", text: re(`\bptr\b|reverse[- ]?dns|\brdns\b|no reverse|` +
		`cannot find your (host ?name|reverse)|reverse (lookup|mapping)|` +
		`does not properly resolve|(ip|client) must resolve|ipv6 sending guidelines|ipv6autherror|` +
		`ipv6_authentication_error|ip name lookup failed|unresolvable relay host|cannot resolve your address|` +
		`\brtr:rd\b`), anyCode: true,
		source: "Gmail, Postfix, GMX, Comcast, free.fr, AOL RTR:RD; Sisimai RequirePTR"},
	// Reputation: dynamic or residential ranges.
	{kind: Reputation, reason: "pbl", text: re(`\brtr:(bb|du)\b|\bes0000(01|10)\b|\(dial\)|\bdy-001\b|notauthorizederror`), anyCode: true,
		source: "AOL RTR:BB/DU, Comcast ES000001/ES000010, T-Online DIAL, Hotmail DY-001, Gmail"},
	{kind: Reputation, reason: "pbl", text: re(`not authorized to send email directly|` +
		`dynamic(ally)?[- ]?(assigned )?(ip|address|range|pool)|dynamic \(residential\)|\bresidential\b|` +
		`dial-?up|transient ip|\bpbl\b|policy block list|smtp server of your isp|dynamic/zombied`),
		source: "Gmail, Hotmail, Spamhaus PBL, Sisimai Blocked (smtp server of your ISP, dynamic/zombied)"},
	// Reputation: IP block lists, Microsoft's, Yahoo's, gateways' and Spamhaus as receivers quote it.
	{kind: Reputation, reason: "blocklist", codes: []string{"7.606"}, source: "Microsoft NDR 5.7.606"},
	{kind: Reputation, reason: "blocklist", text: re(`spamhaus|spamcop|\bsorbs\b|barracuda|cloudmark|blocked using|` +
		`\bdnsbls?\b|\brbl\b|\(s3140\)|\(s3150\)|\bsc-001\b|banned send(ing ip|er)|\[bl2\d\]|\[tss07\]|\(bl\)|` +
		`block for spam|\bbl0000\d\d\b|c=bip\b|c=bl\b|c=r02\d\d\b|ipcheck\.proofpoint|dnsbl-lookup|` +
		`realtime block list|listed as abusive|\[shxbl\]|\bdrbl\b`), anyCode: true,
		source: "Microsoft S3140/S3150/5.7.511, Yahoo BL2x/TSS07, Comcast BL0000xx, GMX, T-Online BL, Proofpoint, " +
			"Barracuda, Cloudmark, AT&T; ZoneMTA config/bounces.txt, Sisimai Blocked"},
	{kind: Reputation, reason: "blocklist", text: re(`block ?list|black ?list|blocklisted|(blocked|refused) - see https?:|` +
		`sending ip .{0,20}is listed|is listed (at|on|by)|rejected due to listing`),
		source: "Hotmail SC-001, ZoneMTA config/bounces.txt, Sisimai Blocked (\"Blocked - see http\")"},
	// Reputation: temporary or general distrust of the IP (Gmail, Microsoft S3113, Yahoo TSS/TS, AOL RLY/CON,
	// Hotmail OU/SC, Orange OFR_999/103, Yandex).
	{kind: Reputation, reason: "reputation", text: re(`\[tss\d\d\]|\[ts0\d\]|\(s3113\)|\(nowl\)|\b(ou-001|sc-00[234])\b|` +
		`\brly:b[12l]\b|\bcon:b1\b|\bofr\d*_(999|103)\b|blocked by spam statistics|` +
		`deferred due to (unexpected volume or )?user complaints|sending mta's poor reputation|poor reputation sender|` +
		`not currently accepting mail from your ip|too many spams from your ip`), anyCode: true,
		source: "Yahoo/AOL postmaster codes, Microsoft S3113, Hotmail codes, Orange OFR, Yandex, Cisco, Mimecast; " +
			"ZoneMTA config/bounces.txt, Sisimai BadReputation"},
	{kind: Reputation, reason: "reputation", text: re(`ip reputation|bad reputation|` +
		`reputation of the sending ip|unsolicited mail originating from your ip|traffic not accepted from this ip`),
		source: "Gmail 421 4.7.0, Microsoft 5.7.708, T-Online NOWL"},
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
			if r.kind == Reputation && !textOK && !r.anyCode {
				continue
			}
			if !r.text.MatchString(text) {
				continue
			}
		}
		if r.kind == None {
			return Refusal{}
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
