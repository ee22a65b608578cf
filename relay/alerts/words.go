package alerts

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The words of each condition: a subject line an admin understands at a glance, what happened, what ptrelay
// does about it, and the one fix. The daemon passes facts; text from outside (a remote reply, a user name a
// client typed) goes through clean. Nothing here ever sees a message body, a password or a token.

// Route is what ptrelay does with mail when direct delivery is unfit, for the "what ptrelay does" sentence.
type Route struct {
	Smarthost string // the smart host's name or address; "" when none is configured
	Mode      string // routing mode in effect: auto, direct or smarthost
	Reroute   bool   // routing.reroute
}

func (r Route) doing(until string) string {
	switch {
	case r.Mode == "smarthost":
		return "All mail goes through the smart host " + r.Smarthost + " anyway (routing.mode = \"smarthost\"): deliveries are not affected."
	case r.Smarthost == "":
		return "No smart host is configured, so ptrelay keeps delivering directly, and receivers will likely refuse that mail."
	case r.Mode == "direct" && r.Reroute:
		return "routing.mode is \"direct\": ptrelay keeps delivering directly; a receiver that refuses mail for this reason gets it through the smart host " + r.Smarthost + " instead."
	case r.Mode == "direct":
		return "routing.mode is \"direct\": ptrelay keeps delivering directly, and receivers will likely refuse that mail."
	}
	return "Mail goes through the smart host " + r.Smarthost + " " + until + "; nothing is lost."
}

func (r Route) severity(base Severity) Severity {
	switch {
	case r.Mode == "smarthost":
		return Info
	case r.Smarthost == "" || r.Mode == "direct" && !r.Reroute:
		return Crit
	}
	return base
}

// Finding is one failed check of the egress self-check, in `ptrelay check`'s words.
type Finding struct {
	Title  string
	Detail string
	Fix    string
}

// Verdict is the condition "family's egress address is no longer fit for direct delivery".
func Verdict(family, ip string, failing []Finding, r Route) Condition {
	reason := "it fails the egress checks"
	var fixes []string
	for i, f := range failing {
		if i == 0 {
			reason = clean(f.Detail, 160)
		}
		if f.Fix != "" && !contains(fixes, f.Fix) {
			fixes = append(fixes, f.Fix)
		}
	}
	var what []string
	for _, f := range failing {
		if f.Title == "" {
			what = append(what, clean(f.Detail, 200))
		} else {
			what = append(what, clean(f.Title, 120)+": "+clean(f.Detail, 200))
		}
	}
	summary := "mail now goes through the smart host " + r.Smarthost + ": " + reason
	if r.Mode != "auto" || r.Smarthost == "" {
		summary = "receivers will refuse direct mail from " + ip + ": " + reason
	}
	return Condition{
		Event: EventVerdict, Subject: family, Severity: r.severity(Warn), Summary: summary,
		Resolved: ip + " passes the egress checks again (" + family + "): mail goes out directly",
		What:     "The egress check of " + ip + " (" + family + ") fails: " + strings.Join(what, "; ") + ".",
		Doing:    r.doing("until the checks pass again"),
		Fix:      strings.Join(fixes, " "),
		Details:  map[string]string{"family": family, "ip": ip, "reason": reason},
	}
}

// Listing is the condition "ip is listed in zone". A PBL-style listing (the address is in a dynamic range) is
// info: it is expected on a dynamic line, and the verdict condition already says what it changes.
func Listing(zone, ip, codes, meaning string, dynamic bool, fix string, r Route) Condition {
	sev := Crit
	if dynamic {
		sev = Info
	}
	return Condition{
		Event: EventListed, Subject: zone + "/" + ip, Severity: sev,
		Summary:  ListingWords(zone, ip, codes, meaning),
		Resolved: ip + " is no longer listed in " + zone,
		What:     zone + " answers " + codes + " for " + ip + meaningClause(meaning) + ". Receivers that use this list refuse mail from this address.",
		Doing:    r.doing("until the listing is gone"),
		Fix:      fix,
		Details:  map[string]string{"zone": zone, "ip": ip, "codes": codes, "meaning": clean(meaning, 160)},
	}
}

// ListingWords says "ip is listed in zone" with what the list's answer means, or its code when the list
// gives no meaning of its own.
func ListingWords(zone, ip, codes, meaning string) string {
	why := clean(meaning, 80)
	if why == "" || why == "listed" {
		why = "code " + codes
	}
	return ip + " is listed in " + zone + " (" + why + ")"
}

func meaningClause(meaning string) string {
	if m := clean(meaning, 160); m != "" && m != "listed" {
		return ": " + m
	}
	return ""
}

// Port25Blocked is the condition "outbound connections to port 25 fail" for one address family.
func Port25Blocked(family, probe, detail, fix string, r Route) Condition {
	return Condition{
		Event: EventPort25, Subject: family, Severity: r.severity(Warn),
		Summary:  "outbound port 25 looks blocked (" + family + ")",
		Resolved: "outbound port 25 is open again (" + family + ")",
		What:     "A test connection to " + probe + " failed: " + clean(detail, 200) + ". Many ISPs block port 25 on residential lines.",
		Doing:    r.doing("until port 25 is open again"),
		Fix:      fix,
		Details:  map[string]string{"family": family, "probe": probe},
	}
}

// QueueFacts describe the queue for the queue conditions.
type QueueFacts struct {
	Oldest    time.Duration // age of the oldest message waiting
	Deferred  int           // deferred recipients (alert mail left out)
	Messages  int
	Lifetime  time.Duration // queue.lifetime: then mail bounces
	LastReply []string      // the most recent delivery failures (replies), newest first, at most three
}

func (q QueueFacts) doing() string {
	return "ptrelay keeps retrying; mail still undelivered after queue.lifetime (" + span(q.Lifetime) + ") bounces to its sender."
}

func (q QueueFacts) replies() string {
	if len(q.LastReply) == 0 {
		return ""
	}
	var rs []string
	for i, r := range q.LastReply {
		if i == 3 {
			break
		}
		rs = append(rs, "\""+clean(r, 200)+"\"")
	}
	return " Latest replies: " + strings.Join(rs, "; ") + "."
}

const queueFix = "Run `ptrelay queue list` to see which destinations wait and their last reply, fix what the replies name (DNS, the smart host's login, a listing), then `ptrelay queue retry -all`."

// QueueOldest is the condition "mail has waited longer than queue_oldest". It turns crit at half the lifetime.
func QueueOldest(q QueueFacts, threshold time.Duration) Condition {
	sev := Warn
	if q.Lifetime > 0 && q.Oldest >= q.Lifetime/2 {
		sev = Crit
	}
	return Condition{
		Event: EventQueueOldest, Severity: sev, Stage: sev.String(),
		Summary: "mail has been waiting " + span(q.Oldest) + " in the queue (" + itoa(q.Deferred) + " deferred " +
			plural(q.Deferred, "recipient") + ")",
		Resolved: "the queue is moving again: no mail waits longer than " + span(threshold/2),
		What: "The oldest message in the queue arrived " + span(q.Oldest) + " ago (alert at " + span(threshold) + "); " +
			itoa(q.Messages) + " " + plural(q.Messages, "message") + " queued, " + itoa(q.Deferred) + " " +
			plural(q.Deferred, "recipient") + " deferred." + q.replies(),
		Doing:   q.doing(),
		Fix:     queueFix,
		Details: map[string]string{"oldest_seconds": itoa(int(q.Oldest.Seconds())), "deferred": itoa(q.Deferred), "messages": itoa(q.Messages)},
	}
}

// QueueDeferred is the condition "more recipients deferred than queue_deferred".
func QueueDeferred(q QueueFacts, threshold int) Condition {
	return Condition{
		Event: EventQueueDeferred, Severity: Warn,
		Summary:  itoa(q.Deferred) + " " + plural(q.Deferred, "recipient") + " deferred in the queue",
		Resolved: "the deferred mail is back to " + itoa(threshold/2) + " " + plural(threshold/2, "recipient") + " or fewer",
		What: itoa(q.Deferred) + " " + plural(q.Deferred, "recipient") + " wait for another attempt (alert above " + itoa(threshold) +
			"); the oldest message arrived " + span(q.Oldest) + " ago." + q.replies(),
		Doing:   q.doing(),
		Fix:     queueFix,
		Details: map[string]string{"deferred": itoa(q.Deferred), "threshold": itoa(threshold), "messages": itoa(q.Messages)},
	}
}

// DiskLow is the condition "little free space where the queue lives".
func DiskLow(dir string, free, total uint64, threshold string) Condition {
	pct := 0
	if total > 0 {
		pct = int(free * 100 / total)
	}
	return Condition{
		Event: EventDiskLow, Subject: dir, Severity: Crit,
		Summary:  "only " + itoa(pct) + "% (" + bytesText(free) + ") free on " + dir,
		Resolved: dir + " has enough free space again",
		What:     "The file system of data_dir " + dir + " has " + bytesText(free) + " free of " + bytesText(total) + " (alert below " + threshold + ").",
		Doing:    "When the disk is full, ptrelay answers new mail with 451 4.3.0 (senders keep it and retry); nothing already queued is lost.",
		Fix:      "Free space on that file system (old logs, journal: journalctl --vacuum-size=200M) or grow it; `ptrelay queue list` shows whether mail piles up.",
		Details:  map[string]string{"dir": dir, "free_bytes": strconv.FormatUint(free, 10), "total_bytes": strconv.FormatUint(total, 10)},
	}
}

// DNSFailing is the condition "no resolver answers".
func DNSFailing(servers []string, detail string) Condition {
	list := strings.Join(servers, ", ")
	return Condition{
		Event: EventDNSFailing, Severity: Crit,
		Summary:  "DNS is not answering (" + list + ")",
		Resolved: "DNS answers again (" + list + ")",
		What:     "Every resolver failed: " + clean(detail, 300) + ".",
		Doing:    "Mail waits in the queue (deferred, 4.4.3) until DNS answers again; the egress verdict keeps its last value.",
		Fix:      "Check that the resolvers in dns.resolvers (or /etc/resolv.conf) run and reach the Internet: dig @SERVER example.com.",
		Details:  map[string]string{"servers": list},
	}
}

// Expiry stages: the first is a warning, the later ones are critical.
var (
	CertStages   = []time.Duration{21 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}
	SecretStages = []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}
)

// expiryStage places notAfter among stages: ok is false while it is further away than the first stage.
func expiryStage(notAfter, now time.Time, stages []time.Duration) (stage string, sev Severity, ok bool) {
	left := notAfter.Sub(now)
	if left <= 0 {
		return "expired", Crit, true
	}
	for i := len(stages) - 1; i >= 0; i-- {
		if left <= stages[i] {
			sev = Crit
			if i == 0 {
				sev = Warn
			}
			return span(stages[i]), sev, true
		}
	}
	return "", 0, false
}

// CertExpiring is the condition "the certificate in key (e.g. smtp.tls_cert) expires soon", or ok false when
// it is further away than the first stage.
func CertExpiring(key, path, names string, notAfter, now time.Time) (Condition, bool) {
	stage, sev, ok := expiryStage(notAfter, now, CertStages)
	if !ok {
		return Condition{}, false
	}
	date := notAfter.UTC().Format("2006-01-02")
	summary := "the STARTTLS certificate for " + names + " expires in " + span(notAfter.Sub(now).Truncate(time.Hour)) + " (" + date + ")"
	if stage == "expired" {
		summary = "the STARTTLS certificate for " + names + " expired on " + date
	}
	return Condition{
		Event: EventCertExpiring, Subject: key, Severity: sev, Stage: stage, Summary: summary,
		Resolved: "the STARTTLS certificate in " + key + " was replaced",
		What:     "The certificate in " + path + " (" + key + ", for " + names + ") is valid until " + notAfter.UTC().Format(time.RFC1123) + ".",
		Doing:    "ptrelay offers it until you replace it; clients that verify certificates (Exchange with a TLS-required connector) refuse to connect once it has expired.",
		Fix:      "Install a renewed certificate at " + path + " and run `systemctl reload ptrelay` (ptrelay reads it at start and reload).",
		Details:  map[string]string{"file": path, "not_after": notAfter.UTC().Format(time.RFC3339), "names": names},
	}, true
}

// SecretExpiring is the condition "the OAuth client secret of smart host host expires soon" (from
// client_secret_expires), or ok false when it is further away than the first stage.
func SecretExpiring(host string, expires, now time.Time) (Condition, bool) {
	host = clean(host, 100)
	stage, sev, ok := expiryStage(expires, now, SecretStages)
	if !ok {
		return Condition{}, false
	}
	date := expires.UTC().Format("2006-01-02")
	summary := "the OAuth client secret for smart host " + host + " expires in " + span(expires.Sub(now).Truncate(time.Hour)) + " (" + date + ")"
	if stage == "expired" {
		summary = "the OAuth client secret for smart host " + host + " expired on " + date
	}
	return Condition{
		Event: EventSecretExpiring, Subject: host, Severity: sev, Stage: stage, Summary: summary,
		Resolved: "the OAuth client secret for smart host " + host + " was renewed",
		What:     "client_secret_expires of smart host " + host + " says the secret is valid until " + date + ".",
		Doing:    "After that date the token endpoint refuses ptrelay, logins to " + host + " fail and its mail waits in the queue.",
		Fix:      "Create a new client secret for the app registration, write it to client_secret_file, set client_secret_expires to its new date and run `systemctl reload ptrelay`.",
		Details:  map[string]string{"host": host, "expires": date},
	}, true
}

// SmarthostDown is the condition "smart host host cannot be reached" (from the delivery side's down marking).
func SmarthostDown(host, lastErr string, waiting int) Condition {
	host = clean(host, 100)
	return Condition{
		Event: EventSmarthostDown, Subject: host, Severity: Crit,
		Summary:  "the smart host " + host + " is down (" + clean(lastErr, 100) + ")",
		Resolved: "the smart host " + host + " accepts mail again",
		What:     "ptrelay cannot hand mail to " + host + ": " + clean(lastErr, 300) + ". " + itoa(waiting) + " " + plural(waiting, "recipient") + " wait for it.",
		Doing:    "Mail for it tries the next smart host in the list, if any, else waits in the queue; nothing bounces before queue.lifetime.",
		Fix:      "Check that " + host + " is reachable from this server (firewall, provider status page), then `ptrelay queue retry -all`.",
		Details:  map[string]string{"host": host, "waiting": itoa(waiting)},
	}
}

// SmarthostAuth is the condition "smart host host refuses ptrelay's login". reply is the host's answer.
func SmarthostAuth(host, reply string) Condition {
	host = clean(host, 100)
	fix := "Check the user name and the password file of this smart host (`ptrelay check` tries the login), then `systemctl reload ptrelay`."
	if strings.Contains(reply, "5.7.30") || strings.Contains(strings.ToLower(reply), "basic authentication is not supported") {
		fix = "The provider turned off password logins: set auth = \"xoauth2\" with an [smarthosts.oauth2] table for this host."
	}
	return Condition{
		Event: EventSmarthostAuth, Subject: host, Severity: Crit,
		Summary:  "the smart host " + host + " refuses ptrelay's login (" + clean(reply, 100) + ")",
		Resolved: "the smart host " + host + " accepts ptrelay's login again",
		What:     host + " answered the login with: " + clean(reply, 300) + ".",
		Doing:    "Mail for this smart host is deferred, never bounced for this: it waits in the queue until the login works (or queue.lifetime passes).",
		Fix:      fix,
		Details:  map[string]string{"host": host, "reply": clean(reply, 300)},
	}
}

// TLSPolicy is the condition "mail to domain is deferred because its MTA-STS or DANE policy fails".
func TLSPolicy(domain, policy, reason string, deferred int) Condition {
	domain, policy = clean(domain, 253), clean(policy, 20)
	return Condition{
		Event: EventTLSPolicy, Subject: domain, Severity: Warn,
		Summary:  "mail to " + domain + " is held: its " + policy + " policy fails (" + itoa(deferred) + " " + plural(deferred, "recipient") + " deferred)",
		Resolved: "mail to " + domain + " is delivered again",
		What:     domain + " publishes " + policy + ", and its mail servers do not meet it: " + clean(reason, 300) + ".",
		Doing:    "Mail to " + domain + " stays in the queue (deferred, 4.7.x): ptrelay never sends it without the TLS the policy asks for, and never reroutes it.",
		Fix:      "Tell " + domain + "'s postmaster that their " + policy + " policy and their mail servers disagree; if you must deliver now, add a [[delivery.tls_policy]] entry for " + domain + ".",
		Details:  map[string]string{"domain": domain, "policy": policy, "deferred": itoa(deferred)},
	}
}

// InboundAuth is the condition "a client keeps failing to log in" (a password changed on one side only).
func InboundAuth(client string, failures int, window time.Duration, users []string) Condition {
	client = clean(client, 64)
	var quoted []string
	for i, u := range users {
		if i == 3 {
			break
		}
		quoted = append(quoted, strconv.Quote(clean(u, 64)))
	}
	who := ""
	if len(quoted) > 0 {
		who = " as " + strings.Join(quoted, ", ")
	}
	return Condition{
		Event: EventInboundAuth, Subject: client, Severity: Warn,
		Summary:  itoa(failures) + " failed logins from " + client + who + " within " + span(window),
		Resolved: client + " logs in again, or stopped trying",
		What:     client + " tried to log in" + who + " and was refused " + itoa(failures) + " times within " + span(window) + ".",
		Doing:    "ptrelay refuses each attempt (535 5.7.8); a sender that cannot log in keeps its mail and retries, so nothing is lost yet.",
		Fix:      "If this is your mail server, its password for ptrelay no longer matches smtp.users: set a new one with `ptrelay hash-password` and reload; if not, block " + client + ".",
		Details:  map[string]string{"client": client, "failures": itoa(failures)},
		Expire:   time.Hour,
	}
}

// ChannelFailing is the condition "alert channel name has failed since since", told on other only.
func ChannelFailing(name, other string, since time.Time, lastErr string) Condition {
	what := map[string]string{"mail": "alert mail", "webhook": "the alert webhook"}[name]
	if what == "" {
		what = name
	}
	return Condition{
		Event: EventChannel, Subject: name, Severity: Crit, Only: other,
		Summary:  what + " fails since " + since.UTC().Format("15:04 MST") + " (" + clean(lastErr, 100) + ")",
		Resolved: what + " works again",
		What:     "ptrelay could not send " + what + " for over an hour: " + clean(lastErr, 300) + ". This notice comes by " + other + " instead.",
		Doing:    "ptrelay keeps trying: webhook notices for 24 hours, alert mail a few times within minutes.",
		Fix:      "Check [alerts] " + map[string]string{"mail": "mail_via and mail_to", "webhook": "webhook_url"}[name] + " and that the receiver answers; `ptrelay alerts test` shows what happens per channel.",
		Details:  map[string]string{"channel": name},
	}
}

// TestNotice is the notice of `ptrelay alerts test`.
func TestNotice(host string, now time.Time) Notice {
	return Notice{
		ID: randomID(), Key: string(EventTest), Event: EventTest, Kind: KindTest, Status: StatusFiring, Severity: Info,
		Summary: "test notice from " + host,
		What:    "Someone ran `ptrelay alerts test` on " + host + ". If you read this, this channel works.",
		Since:   now, At: now,
	}
}

// clean makes outside text safe for a one-line field: control characters become spaces, runs of spaces
// shrink, and the text is clipped to max runes.
func clean(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		if n == max {
			return strings.TrimSpace(b.String()) + "…"
		}
		space = false
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func sentence(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// span is a duration for people: "3 days", "2h15m", "45s".
func span(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return itoa(int(d/(24*time.Hour))) + " days"
	case d >= 48*time.Hour:
		return itoa(int(d/(24*time.Hour))) + " days " + span(d%(24*time.Hour))
	case d >= time.Hour:
		d = d.Truncate(time.Minute)
		s := itoa(int(d/time.Hour)) + "h"
		if m := int(d % time.Hour / time.Minute); m > 0 {
			s += itoa(m) + "m"
		}
		return s
	case d >= time.Minute:
		return itoa(int(d/time.Minute)) + " min"
	}
	return itoa(int(d/time.Second)) + "s"
}

// stamp is a time for people, in the machine's zone.
func stamp(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
