// Package alerts tells the admin, by mail and by webhook, when something needs them: the egress address got
// listed, mail piles up, the disk fills, a certificate expires. The parts of the daemon that notice a problem
// raise a Condition; this package decides whether and when that becomes a notice, in plain words.
//
// One state machine per condition key (event + subject, e.g. "listed/zen.spamhaus.org/203.0.113.7"), kept in
// the queue database so that a restart neither forgets a condition nor tells it again: a condition fires after
// a hold-down (at once for refused logins and listings), is repeated every `repeat` while it holds, and is
// resolved once. Notices are grouped (30 s), capped (6 rounds an hour, the rest folded into the next round),
// and a condition that flips more than four times in an hour becomes one "flapping" notice. Info events go to
// the digest only.
//
// The state machine (Machine) does no I/O and takes the time as an argument, so it is tested with a fake
// clock; the Manager feeds it, persists it through a StateStore and hands the rounds to the channels (mail
// through the internal mail server or ptrelay's own queue, Standard Webhooks POSTs with persisted retries).
// The package knows nothing of SMTP sessions, delivery or DNS: the daemon hands it conditions.
package alerts

import (
	"fmt"
	"strings"
	"time"
)

// Event is the kind of a condition; the webhook type is "ptrelay." + Event.
type Event string

// The events. The list is part of the webhook contract (docs/operations.md).
const (
	EventVerdict        Event = "verdict"         // direct-ok -> smarthost (per address family)
	EventListed         Event = "listed"          // the egress address is on a DNS blocklist
	EventPort25         Event = "port25"          // outbound port 25 is blocked
	EventQueueOldest    Event = "queue.oldest"    // mail has waited longer than queue_oldest
	EventQueueDeferred  Event = "queue.deferred"  // more deferred recipients than queue_deferred
	EventSmarthostDown  Event = "smarthost.down"  // a smart host is unreachable
	EventSmarthostAuth  Event = "smarthost.auth"  // a smart host refuses ptrelay's login
	EventSecretExpiring Event = "secret.expiring" // an OAuth client secret expires soon
	EventCertExpiring   Event = "cert.expiring"   // the inbound STARTTLS certificate expires soon
	EventDiskLow        Event = "disk.low"        // little free space where the queue lives
	EventDNSFailing     Event = "dns.failing"     // no resolver answers
	EventTLSPolicy      Event = "tls.policy"      // MTA-STS/DANE deferrals at one domain
	EventInboundAuth    Event = "inbound.auth"    // repeated failed logins from one client
	EventChannel        Event = "alerts.channel"  // one alert channel has failed for an hour (told on the other)
	EventTest           Event = "test"            // `ptrelay alerts test`
	EventDigest         Event = "digest"          // the daily or weekly summary
	EventEgressIP       Event = "egress.ip"       // a new egress address, same verdict: a digest line only
)

// heldEvents wait for the hold-down before they fire: conditions that come and go on their own (a queue that
// drains, a disk that a cron job cleans, a resolver that restarts). The others fire at once: a listing or a
// refused login does not go away by waiting.
var heldEvents = map[Event]bool{
	EventQueueOldest: true, EventQueueDeferred: true, EventDiskLow: true, EventDNSFailing: true,
	EventSmarthostDown: true,
}

// Severity orders notices; min_severity drops the lower ones to the digest.
type Severity int

const (
	Info Severity = iota + 1
	Warn
	Crit
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warn:
		return "warn"
	case Crit:
		return "crit"
	}
	return "unknown"
}

// MarshalText writes the severity as its word.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads info, warn or crit.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity reads "info", "warn" or "crit".
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(s) {
	case "info":
		return Info, nil
	case "warn", "warning":
		return Warn, nil
	case "crit", "critical":
		return Crit, nil
	}
	return 0, fmt.Errorf("unknown severity %q: use info, warn or crit", s)
}

// Condition is one problem as the part of the daemon that noticed it describes it. Raising the same key again
// updates the words and figures; the notice is sent according to the state machine, not per Raise.
type Condition struct {
	Event    Event    `json:"event"`
	Subject  string   `json:"subject,omitempty"` // what it is about (zone/address, host, file); "" when one of a kind
	Severity Severity `json:"severity"`
	// Stage, when it changes while the condition fires, is told at once: an expiry date passing 7 days, then 1.
	Stage string `json:"stage,omitempty"`
	// Summary is the subject line: what happened, understandable at a glance.
	Summary string `json:"summary"`
	// Resolved is the subject line of the notice when the condition clears.
	Resolved string            `json:"resolved,omitempty"`
	What     string            `json:"what,omitempty"`  // what happened, with figures
	Doing    string            `json:"doing,omitempty"` // what ptrelay does about it
	Fix      string            `json:"fix,omitempty"`   // the one thing to do, in `ptrelay check`'s words
	Details  map[string]string `json:"details,omitempty"`
	// Expire clears the condition when it was not raised again for this long (sources that report only the
	// bad news, such as failed logins); 0: only Clear or Sync clears it.
	Expire time.Duration `json:"expire,omitempty"`
	// Only restricts the notices to one channel ("mail" or "webhook"): a failing channel is told on the other.
	Only string `json:"only,omitempty"`
}

// Key is the state machine's key: event and subject.
func (c Condition) Key() string { return Key(c.Event, c.Subject) }

// Key joins an event and a subject into a condition key.
func Key(e Event, subject string) string {
	if subject == "" {
		return string(e)
	}
	return string(e) + "/" + subject
}

// Status is what a notice says about its condition: the webhook's data.status.
type Status string

const (
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
)

// Kind says why a notice is sent.
type Kind string

const (
	KindFired    Kind = "fired"    // the condition started (after its hold-down)
	KindReminder Kind = "reminder" // it still holds after `repeat`
	KindChanged  Kind = "changed"  // it got worse (severity or stage) while firing
	KindResolved Kind = "resolved" // it cleared
	KindFlapping Kind = "flapping" // it came and went more than four times in an hour
	KindTest     Kind = "test"
	KindDigest   Kind = "digest"
)

// Notice is one thing told to the admin: a condition's change, a test, or the digest.
type Notice struct {
	ID       string            `json:"id"` // webhook-id: stable across retries
	Key      string            `json:"key"`
	Event    Event             `json:"event"`
	Subject  string            `json:"subject,omitempty"`
	Kind     Kind              `json:"kind"`
	Status   Status            `json:"status"`
	Severity Severity          `json:"severity"`
	Summary  string            `json:"summary"`
	What     string            `json:"what,omitempty"`
	Doing    string            `json:"doing,omitempty"`
	Fix      string            `json:"fix,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	Since    time.Time         `json:"since"`
	At       time.Time         `json:"at"`
	Only     string            `json:"only,omitempty"`
	// Folded counts earlier notices of the same key that this one replaced while waiting for its round.
	Folded int `json:"folded,omitempty"`
	// Lines is the digest's body (Kind digest only).
	Lines []string `json:"lines,omitempty"`
}

// Round is what one notification sends: one mail, and one webhook POST per notice.
type Round struct {
	Notices []Notice
	At      time.Time
}

// Alert is a condition that holds, as `ptrelay alerts list` and `ptrelay status` show it.
type Alert struct {
	Key      string    `json:"key"`
	Event    Event     `json:"event"`
	Subject  string    `json:"subject,omitempty"`
	Severity Severity  `json:"severity"`
	State    string    `json:"state"` // "firing", "pending" (within its hold-down), "flapping", "quiet" (below min_severity)
	Summary  string    `json:"summary"`
	Since    time.Time `json:"since"`
	FiresAt  time.Time `json:"fires_at,omitzero"` // pending: when it fires if it still holds
	Fix      string    `json:"fix,omitempty"`
}
