package alerts

import (
	"crypto/rand"
	"encoding/base32"
	"maps"
	"slices"
	"strings"
	"time"
)

// The fixed rules of noise control (Alertmanager's group_wait is 30 s; Postfix warns that notices at the end
// of an outage come in bursts, hence the cap).
const (
	// GroupWindow: the first notice of a round waits this long for others, so one event that trips several
	// conditions (a listing changes the verdict too) makes one mail.
	GroupWindow = 30 * time.Second
	// RoundsPerHour caps the rounds; what comes after waits for the next free slot, folded into one round.
	RoundsPerHour = 6
	// FlapLimit: a condition that starts more often than this within FlapWindow becomes one flapping notice.
	FlapLimit  = 4
	FlapWindow = time.Hour
	// ChannelFailingAfter: a channel that has failed this long is reported on the other channel.
	ChannelFailingAfter = time.Hour
	// digestHour is the local hour of the daily and weekly digest (weekly: on Mondays).
	digestHour = 8
	// maxNotes bounds the digest's lines between two digests.
	maxNotes = 200
)

// Settings are what the state machine needs of the [alerts] keys.
type Settings struct {
	Hostname    string
	MinSeverity Severity      // lower severities go to the digest only; zero means Warn
	Hold        time.Duration // hold-down of the held events (queue, disk, DNS, smart host down)
	Repeat      time.Duration // reminder interval while a condition holds; 0: no reminders
	Digest      string        // "off", "daily" or "weekly"
	Channels    []string      // the configured channels, "mail" and/or "webhook"
	Location    *time.Location
	// GroupWindow replaces the package's GroupWindow when positive (end-to-end tests, which cannot wait 30 s
	// per round).
	GroupWindow time.Duration
}

func (s Settings) group() time.Duration {
	if s.GroupWindow > 0 {
		return s.GroupWindow
	}
	return GroupWindow
}

func (s Settings) minSeverity() Severity {
	if s.MinSeverity == 0 {
		return Warn
	}
	return s.MinSeverity
}

func (s Settings) loc() *time.Location {
	if s.Location == nil {
		return time.Local
	}
	return s.Location
}

// cond is the persisted state of one condition key.
type cond struct {
	C        Condition   `json:"c"`
	Active   bool        `json:"active"`             // raised and not cleared
	Since    time.Time   `json:"since"`              // start of this episode
	LastSeen time.Time   `json:"last_seen"`          // last Raise (Expire counts from here)
	Fired    bool        `json:"fired,omitempty"`    // this episode was told (or sent to the digest)
	LastSent time.Time   `json:"last_sent,omitzero"` // last fired, reminder or changed notice
	Flips    []time.Time `json:"flips,omitempty"`    // starts within FlapWindow
	Flapping bool        `json:"flapping,omitempty"` // one flapping notice went; silent until steady
	Cleared  time.Time   `json:"cleared,omitzero"`   // end of the last episode
}

// Note is one line of the digest.
type Note struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

type channelHealth struct {
	FailingSince time.Time `json:"failing_since,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// book is the machine's bookkeeping besides the conditions, persisted as one value.
type book struct {
	Outbox       []Notice                 `json:"outbox,omitempty"`
	GroupStart   time.Time                `json:"group_start,omitzero"`
	Rounds       []time.Time              `json:"rounds,omitempty"` // rounds sent within the last hour
	DigestLast   time.Time                `json:"digest_last,omitzero"`
	Notes        []Note                   `json:"notes,omitempty"`
	NotesDropped int                      `json:"notes_dropped,omitempty"`
	Channels     map[string]channelHealth `json:"channels,omitempty"`
	// QueuedMail lists alert mail handed to ptrelay's own queue (mail_via empty), so that the queue conditions
	// can leave it out: alert mail stuck in a broken queue must not raise a queue alert of its own.
	QueuedMail []string `json:"queued_mail,omitempty"`
}

// Machine is the alert state machine. It does no I/O and reads no clock: every method takes the time. It is
// not safe for concurrent use (the Manager serialises it).
type Machine struct {
	s     Settings
	conds map[string]*cond
	b     book
	newID func() string

	dirty     map[string]bool // condition keys changed since Changes
	soft      map[string]bool // keys whose words only changed (a queue's age): written by Changes(true)
	bookDirty bool
}

// NewMachine returns an empty machine. Its digest period starts at now.
func NewMachine(s Settings, now time.Time) *Machine {
	m := &Machine{s: s, conds: map[string]*cond{}, newID: randomID, dirty: map[string]bool{}, soft: map[string]bool{}}
	m.b.DigestLast = now
	m.bookDirty = true
	return m
}

// SetSettings applies new settings (a reload); conditions and rounds are kept.
func (m *Machine) SetSettings(s Settings) { m.s = s }

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (m *Machine) holdFor(e Event) time.Duration {
	if heldEvents[e] {
		return m.s.Hold
	}
	return 0
}

func (m *Machine) touch(key string) { m.dirty[key] = true }

// Raise records that c holds now. A new condition fires at once or after its hold-down (Tick); a firing one
// whose severity rose or whose stage changed is told at once; otherwise only its words are updated.
func (m *Machine) Raise(now time.Time, c Condition) {
	key := c.Key()
	st := m.conds[key]
	if st == nil {
		st = &cond{}
		m.conds[key] = st
	}
	prev := st.C
	st.C = c
	st.LastSeen = now
	if !st.Active {
		st.Active, st.Since, st.Fired, st.LastSent = true, now, false, time.Time{}
		st.Flips = append(recent(st.Flips, now, FlapWindow), now)
		m.touch(key)
		if len(st.Flips) > FlapLimit && !st.Flapping {
			st.Flapping = true
			m.notify(now, key, st, KindFlapping)
		}
	} else if !sameCondition(prev, c) {
		// Words that change with every observation (an age, a count) are kept in memory and written now and
		// then (Changes(true)), not at every observation; what changes the notices is written at once.
		m.soft[key] = true
		if c.Severity != prev.Severity || c.Stage != prev.Stage || c.Only != prev.Only || c.Expire != prev.Expire {
			m.touch(key)
		}
		if st.Fired && !st.Flapping && (c.Severity > prev.Severity || c.Stage != prev.Stage) {
			st.LastSent = now
			m.notify(now, key, st, KindChanged)
		}
	}
	m.evaluate(now, key, st)
}

// Clear records that the condition key no longer holds: one resolved notice if it was told, nothing if it
// was still within its hold-down.
func (m *Machine) Clear(now time.Time, key string) {
	st := m.conds[key]
	if st == nil || !st.Active {
		return
	}
	st.Active, st.Cleared = false, now
	m.touch(key)
	if st.Fired && !st.Flapping {
		m.notify(now, key, st, KindResolved)
	}
	m.forgetIfSettled(now, key, st)
}

// Sync raises every condition in conds and clears the other active conditions of event whose subject starts
// with scope: for sources that report the whole picture each time (the blocklists of one egress check).
func (m *Machine) Sync(now time.Time, event Event, scope string, conds []Condition) {
	keep := map[string]bool{}
	for _, c := range conds {
		keep[c.Key()] = true
		m.Raise(now, c)
	}
	for _, key := range slices.Sorted(maps.Keys(m.conds)) {
		st := m.conds[key]
		if st.Active && st.C.Event == event && strings.HasPrefix(st.C.Subject, scope) && !keep[key] {
			m.Clear(now, key)
		}
	}
}

// Tick moves time on: hold-downs that ended fire, reminders fall due, silent conditions expire, flapping ones
// that have been steady for FlapWindow say where they ended up, and failing channels are reported.
func (m *Machine) Tick(now time.Time) {
	m.checkChannels(now)
	for _, key := range slices.Sorted(maps.Keys(m.conds)) {
		st := m.conds[key]
		if st.Active && st.C.Expire > 0 && now.Sub(st.LastSeen) >= st.C.Expire {
			m.Clear(now, key)
			continue
		}
		m.evaluate(now, key, st)
		if st.Flapping && !lastAfter(st.Flips, now.Add(-FlapWindow)) {
			st.Flapping = false
			m.touch(key)
			if st.Active {
				st.Fired, st.LastSent = true, now
				m.notify(now, key, st, KindFired)
			} else {
				m.notify(now, key, st, KindResolved)
			}
		}
		m.forgetIfSettled(now, key, st)
	}
}

// evaluate fires a condition whose hold-down ended and reminds of one that has held for Repeat since it was
// last told.
func (m *Machine) evaluate(now time.Time, key string, st *cond) {
	if !st.Active || st.Flapping {
		return
	}
	switch {
	case !st.Fired && now.Sub(st.Since) >= m.holdFor(st.C.Event):
		st.Fired, st.LastSent = true, now
		m.touch(key)
		m.notify(now, key, st, KindFired)
	case st.Fired && m.s.Repeat > 0 && now.Sub(st.LastSent) >= m.s.Repeat:
		st.LastSent = now
		m.touch(key)
		m.notify(now, key, st, KindReminder)
	}
}

// forgetIfSettled drops a cleared condition once nothing of it is needed any more (no recent starts to count
// for flapping).
func (m *Machine) forgetIfSettled(now time.Time, key string, st *cond) {
	if st.Active || st.Flapping {
		return
	}
	st.Flips = recent(st.Flips, now, FlapWindow)
	if len(st.Flips) == 0 {
		delete(m.conds, key)
		m.touch(key)
	}
}

// notify makes a notice of st and queues it for the next round, or, below min_severity, writes a digest line.
func (m *Machine) notify(now time.Time, key string, st *cond, kind Kind) {
	c := st.C
	n := Notice{
		ID: m.newID(), Key: key, Event: c.Event, Subject: c.Subject, Kind: kind, Status: StatusFiring,
		Severity: c.Severity, Summary: c.Summary, What: c.What, Doing: c.Doing, Fix: c.Fix,
		Details: maps.Clone(c.Details), Since: st.Since, At: now, Only: c.Only,
	}
	switch kind {
	case KindResolved:
		n.Status = StatusResolved
		if c.Resolved != "" {
			n.Summary = c.Resolved
		}
		n.What = "It held from " + stamp(st.Since, m.s.loc()) + " to " + stamp(st.Cleared, m.s.loc()) +
			" (" + span(st.Cleared.Sub(st.Since)) + ")."
		n.Doing, n.Fix = "", ""
	case KindFlapping:
		n.What = "It started " + itoa(len(st.Flips)) + " times within the last hour and cleared in between. " +
			"ptrelay tells you again when it has been steady for an hour." + sentence(c.What)
		if n.Details == nil {
			n.Details = map[string]string{}
		}
		n.Details["flapping"] = itoa(len(st.Flips))
	}
	if c.Severity < m.s.minSeverity() && c.Event != EventChannel {
		m.note(now, string(n.Status)+": "+n.Summary)
		return
	}
	m.enqueue(now, n)
}

// enqueue adds n to the outbox; an unsent notice of the same key is replaced (folded), so a round says where a
// condition stands, not every step it took while waiting.
func (m *Machine) enqueue(now time.Time, n Notice) {
	if len(m.b.Outbox) == 0 {
		m.b.GroupStart = now
	}
	for i, o := range m.b.Outbox {
		if o.Key != "" && o.Key == n.Key {
			n.Folded = o.Folded + 1
			if o.Since.Before(n.Since) {
				n.Since = o.Since
			}
			m.b.Outbox = slices.Delete(m.b.Outbox, i, i+1)
			break
		}
	}
	m.b.Outbox = append(m.b.Outbox, n)
	m.bookDirty = true
}

// note adds a line to the next digest.
func (m *Machine) note(now time.Time, text string) {
	if m.s.Digest == "off" || m.s.Digest == "" {
		return
	}
	if len(m.b.Notes) >= maxNotes {
		m.b.Notes = m.b.Notes[1:]
		m.b.NotesDropped++
	}
	m.b.Notes = append(m.b.Notes, Note{At: now, Text: text})
	m.bookDirty = true
}

// Note records an event that only the digest tells (an egress address change with the same verdict).
func (m *Machine) Note(now time.Time, text string) { m.note(now, text) }

// TakeRound returns the round due at now, if any, and removes its notices from the outbox. A round is due
// GroupWindow after its first notice, and not before the hourly cap has a free slot.
func (m *Machine) TakeRound(now time.Time) (Round, bool) {
	due, ok := m.roundDue(now)
	if !ok || now.Before(due) {
		return Round{}, false
	}
	r := Round{Notices: slices.Clone(m.b.Outbox), At: now}
	slices.SortStableFunc(r.Notices, func(a, b Notice) int { return int(b.Severity) - int(a.Severity) })
	m.b.Outbox, m.b.GroupStart = nil, time.Time{}
	m.b.Rounds = append(recent(m.b.Rounds, now, time.Hour), now)
	for _, n := range r.Notices {
		m.note(now, "told: "+string(n.Status)+": "+n.Summary)
	}
	m.bookDirty = true
	return r, true
}

func (m *Machine) roundDue(now time.Time) (time.Time, bool) {
	if len(m.b.Outbox) == 0 {
		return time.Time{}, false
	}
	due := m.b.GroupStart.Add(m.s.group())
	if r := recent(m.b.Rounds, now, time.Hour); len(r) >= RoundsPerHour {
		if free := r[len(r)-RoundsPerHour].Add(time.Hour); free.After(due) {
			due = free
		}
	}
	return due, true
}

// Next returns when something is next due (a round, a hold-down, a reminder, an expiry, the end of flapping,
// the digest, a channel crossing ChannelFailingAfter); zero when nothing is scheduled.
func (m *Machine) Next(now time.Time) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if due, ok := m.roundDue(now); ok {
		at(due)
	}
	for _, st := range m.conds {
		switch {
		case st.Flapping && len(st.Flips) > 0:
			at(st.Flips[len(st.Flips)-1].Add(FlapWindow))
		case st.Active && !st.Fired:
			at(st.Since.Add(m.holdFor(st.C.Event)))
		case st.Active && m.s.Repeat > 0:
			at(st.LastSent.Add(m.s.Repeat))
		case !st.Active && len(st.Flips) > 0:
			at(st.Flips[len(st.Flips)-1].Add(FlapWindow))
		}
		if st.Active && st.C.Expire > 0 {
			at(st.LastSeen.Add(st.C.Expire))
		}
	}
	at(m.DigestDue())
	for _, h := range m.b.Channels {
		if !h.FailingSince.IsZero() {
			at(h.FailingSince.Add(ChannelFailingAfter))
		}
	}
	return next
}

// Alerts lists the conditions that hold, most severe first.
func (m *Machine) Alerts() []Alert {
	var out []Alert
	for key, st := range m.conds {
		if !st.Active {
			continue
		}
		a := Alert{Key: key, Event: st.C.Event, Subject: st.C.Subject, Severity: st.C.Severity, Summary: st.C.Summary,
			Since: st.Since, Fix: st.C.Fix, State: "firing"}
		switch {
		case st.Flapping:
			a.State = "flapping"
		case !st.Fired:
			a.State, a.FiresAt = "pending", st.Since.Add(m.holdFor(st.C.Event))
		case st.C.Severity < m.s.minSeverity() && st.C.Event != EventChannel:
			a.State = "quiet"
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alert) int {
		if a.Severity != b.Severity {
			return int(b.Severity) - int(a.Severity)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// ChannelResult records the outcome of one delivery attempt on a channel. A channel that has failed for
// ChannelFailingAfter raises EventChannel, told only on the other channel; its next success clears it.
func (m *Machine) ChannelResult(now time.Time, channel string, ok bool, detail string) {
	if m.b.Channels == nil {
		m.b.Channels = map[string]channelHealth{}
	}
	h := m.b.Channels[channel]
	if ok {
		if !h.FailingSince.IsZero() {
			m.b.Channels[channel] = channelHealth{}
			m.bookDirty = true
		}
		m.Clear(now, Key(EventChannel, channel))
		return
	}
	if h.FailingSince.IsZero() {
		h.FailingSince = now
	}
	h.LastError = detail
	m.b.Channels[channel] = h
	m.bookDirty = true
	m.checkChannels(now)
}

func (m *Machine) checkChannels(now time.Time) {
	for _, name := range slices.Sorted(maps.Keys(m.b.Channels)) {
		h := m.b.Channels[name]
		if h.FailingSince.IsZero() || now.Sub(h.FailingSince) < ChannelFailingAfter {
			continue
		}
		other := ""
		for _, c := range m.s.Channels {
			if c != name {
				other = c
			}
		}
		if other == "" {
			continue // nobody to tell: the log and ptrelay_alert_notices_total say it
		}
		m.Raise(now, ChannelFailing(name, other, h.FailingSince, h.LastError))
	}
}

// TrackQueuedMail remembers the queue ID of alert mail handed to ptrelay's own queue.
func (m *Machine) TrackQueuedMail(id string) {
	m.b.QueuedMail = append(m.b.QueuedMail, id)
	m.bookDirty = true
}

// QueuedMail returns the IDs of alert mail that may still be in ptrelay's queue.
func (m *Machine) QueuedMail() []string { return slices.Clone(m.b.QueuedMail) }

// ForgetQueuedMail drops IDs that have left the queue.
func (m *Machine) ForgetQueuedMail(gone []string) {
	if len(gone) == 0 {
		return
	}
	m.b.QueuedMail = slices.DeleteFunc(m.b.QueuedMail, func(id string) bool { return slices.Contains(gone, id) })
	m.bookDirty = true
}

// sameCondition compares what a notice would say.
func sameCondition(a, b Condition) bool {
	return a.Event == b.Event && a.Subject == b.Subject && a.Severity == b.Severity && a.Stage == b.Stage &&
		a.Summary == b.Summary && a.Resolved == b.Resolved && a.What == b.What && a.Doing == b.Doing &&
		a.Fix == b.Fix && maps.Equal(a.Details, b.Details) && a.Expire == b.Expire && a.Only == b.Only
}

// recent returns the times of ts within window before now (ts is oldest first).
func recent(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	cut := now.Add(-window)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return slices.Clone(ts[i:])
}

func lastAfter(ts []time.Time, t time.Time) bool {
	return len(ts) > 0 && ts[len(ts)-1].After(t)
}
