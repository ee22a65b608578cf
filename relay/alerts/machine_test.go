package alerts

import (
	"strings"
	"testing"
	"time"
)

// The state machine with an injected clock: every test drives time by hand, so nothing here sleeps.

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) // a Wednesday

func settings() Settings {
	return Settings{Hostname: "relay.test", MinSeverity: Warn, Hold: 10 * time.Minute, Repeat: 24 * time.Hour,
		Digest: "daily", Channels: []string{"mail", "webhook"}, Location: time.UTC}
}

// clock is a fake clock that moves only when told.
type clock struct{ now time.Time }

func (c *clock) add(d time.Duration) time.Time { c.now = c.now.Add(d); return c.now }

func listed(ip string) Condition {
	return Condition{Event: EventListed, Subject: "bl.test/" + ip, Severity: Crit, Summary: ip + " is listed in bl.test",
		Resolved: ip + " is no longer listed in bl.test", Fix: "request removal"}
}

func deferred(n int) Condition {
	return QueueDeferred(QueueFacts{Deferred: n, Oldest: time.Hour, Messages: n, Lifetime: 5 * 24 * time.Hour}, 50)
}

// rounds collects every round the machine releases while the clock walks to until in steps of step.
func walk(m *Machine, c *clock, until time.Time, step time.Duration) []Round {
	var out []Round
	for !c.now.After(until) {
		m.Tick(c.now)
		if r, ok := m.TakeRound(c.now); ok {
			out = append(out, r)
		}
		c.add(step)
	}
	return out
}

func kinds(rs []Round) []string {
	var out []string
	for _, r := range rs {
		var ks []string
		for _, n := range r.Notices {
			ks = append(ks, string(n.Kind)+":"+n.Key)
		}
		out = append(out, strings.Join(ks, ","))
	}
	return out
}

func TestMachine_ListingFiresAtOnceAfterGroupWindow(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, listed("192.0.2.7"))
	if _, ok := m.TakeRound(c.now.Add(GroupWindow - time.Second)); ok {
		t.Fatal("a round went out before the group window ended")
	}
	r, ok := m.TakeRound(c.now.Add(GroupWindow))
	if !ok || len(r.Notices) != 1 || r.Notices[0].Kind != KindFired || r.Notices[0].Status != StatusFiring {
		t.Fatalf("round after the group window = %+v, %v; want one fired notice", r, ok)
	}
	if r.Notices[0].ID == "" || !strings.HasPrefix(r.Notices[0].ID, "msg_") {
		t.Errorf("notice id %q", r.Notices[0].ID)
	}
}

func TestMachine_HoldDown(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, deferred(60))
	rs := walk(m, c, t0.Add(10*time.Minute-time.Second), 10*time.Second)
	if len(rs) != 0 {
		t.Fatalf("a held condition was told within its hold-down: %v", kinds(rs))
	}
	if a := m.Alerts(); len(a) != 1 || a[0].State != "pending" || !a[0].FiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("alerts during the hold-down = %+v", a)
	}
	rs = walk(m, c, t0.Add(10*time.Minute+GroupWindow), 10*time.Second)
	if got := kinds(rs); len(got) != 1 || got[0] != "fired:queue.deferred" {
		t.Fatalf("after the hold-down: %v", got)
	}
	if a := m.Alerts(); a[0].State != "firing" {
		t.Errorf("state after firing = %q", a[0].State)
	}
}

// A condition that clears within its hold-down is never told, not even resolved.
func TestMachine_HoldDownClearedSilently(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, deferred(60))
	c.add(5 * time.Minute)
	m.Clear(c.now, deferred(60).Key())
	if rs := walk(m, c, t0.Add(2*time.Hour), time.Minute); len(rs) != 0 {
		t.Fatalf("a condition shorter than its hold-down was told: %v", kinds(rs))
	}
	if a := m.Alerts(); len(a) != 0 {
		t.Errorf("cleared condition still listed: %+v", a)
	}
}

func TestMachine_RepeatAndOneResolved(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, listed("192.0.2.7"))
	rs := walk(m, c, t0.Add(50*time.Hour), time.Minute)
	if got := kinds(rs); len(got) != 3 || got[0] != "fired:listed/bl.test/192.0.2.7" ||
		got[1] != "reminder:listed/bl.test/192.0.2.7" || got[2] != "reminder:listed/bl.test/192.0.2.7" {
		t.Fatalf("50 hours of a listing with repeat 24h: %v", got)
	}
	// Raising it again with the same words changes nothing.
	m.Raise(c.now, listed("192.0.2.7"))
	m.Clear(c.now, listed("192.0.2.7").Key())
	m.Clear(c.now, listed("192.0.2.7").Key())
	rs = walk(m, c, c.now.Add(3*time.Hour), time.Minute)
	if got := kinds(rs); len(got) != 1 || got[0] != "resolved:listed/bl.test/192.0.2.7" {
		t.Fatalf("after two clears: %v, want one resolved", got)
	}
	n := rs[0].Notices[0]
	if n.Status != StatusResolved || n.Summary != "192.0.2.7 is no longer listed in bl.test" || n.Fix != "" ||
		!strings.Contains(n.What, "It held from") {
		t.Errorf("resolved notice = %+v", n)
	}
}

func TestMachine_RepeatZeroMeansNoReminders(t *testing.T) {
	s := settings()
	s.Repeat = 0
	c := &clock{t0}
	m := NewMachine(s, c.now)
	m.Raise(c.now, listed("192.0.2.7"))
	if got := kinds(walk(m, c, t0.Add(72*time.Hour), time.Hour)); len(got) != 1 {
		t.Fatalf("repeat = 0: %v", got)
	}
}

// Conditions raised within the group window go out as one round, most severe first.
func TestMachine_Grouping(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, Port25Blocked("ipv4", "mx:25", "timeout", "ask the ISP", Route{Smarthost: "sh", Mode: "auto"}))
	c.add(10 * time.Second)
	m.Raise(c.now, listed("192.0.2.7"))
	c.add(15 * time.Second)
	m.Raise(c.now, listed("192.0.2.8"))
	rs := walk(m, c, t0.Add(10*time.Minute), time.Second)
	if len(rs) != 1 || len(rs[0].Notices) != 3 {
		t.Fatalf("three conditions within 30 s: %v", kinds(rs))
	}
	if rs[0].Notices[0].Severity != Crit || rs[0].Notices[2].Event != EventPort25 {
		t.Errorf("round not ordered most severe first: %v", kinds(rs))
	}
	if !rs[0].At.Equal(t0.Add(GroupWindow)) {
		t.Errorf("round at %v, want the end of the first notice's window %v", rs[0].At, t0.Add(GroupWindow))
	}
}

// At most RoundsPerHour rounds an hour; what comes later waits for the next free slot and is folded.
func TestMachine_HourlyCap(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	var rounds []Round
	for i := range 9 {
		ip := "192.0.2." + itoa(i+1)
		m.Raise(c.now, listed(ip))
		rounds = append(rounds, walk(m, c, c.now.Add(time.Minute), time.Second)...)
	}
	// A listing that comes and goes while the cap holds is folded into one notice.
	m.Clear(c.now, listed("192.0.2.9").Key())
	rounds = append(rounds, walk(m, c, t0.Add(2*time.Hour), time.Second)...)
	if len(rounds) != RoundsPerHour+1 {
		t.Fatalf("%d rounds: %v", len(rounds), kinds(rounds))
	}
	last := rounds[RoundsPerHour]
	if want := rounds[0].At.Add(time.Hour); !last.At.Equal(want) {
		t.Errorf("the capped round went at %v, want %v", last.At, want)
	}
	got := kinds([]Round{last})[0]
	if got != "fired:listed/bl.test/192.0.2.7,fired:listed/bl.test/192.0.2.8,resolved:listed/bl.test/192.0.2.9" {
		t.Errorf("capped round = %s", got)
	}
	for _, n := range last.Notices {
		if n.Key == "listed/bl.test/192.0.2.9" && n.Folded != 1 {
			t.Errorf("fired+resolved of .9 not folded: %+v", n)
		}
	}
}

// A condition that starts more than FlapLimit times in an hour becomes one flapping notice; once steady for an
// hour, one notice says where it ended up.
func TestMachine_Flapping(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	var rounds []Round
	for range 8 {
		m.Raise(c.now, listed("192.0.2.7"))
		rounds = append(rounds, walk(m, c, c.now.Add(2*time.Minute), 10*time.Second)...)
		m.Clear(c.now, listed("192.0.2.7").Key())
		rounds = append(rounds, walk(m, c, c.now.Add(2*time.Minute), 10*time.Second)...)
	}
	// It stays cleared from here on.
	rounds = append(rounds, walk(m, c, c.now.Add(3*time.Hour), time.Minute)...)
	var after []string
	flaps := 0
	for _, r := range rounds {
		for _, n := range r.Notices {
			switch {
			case n.Kind == KindFlapping:
				flaps++
				if n.Details["flapping"] != "5" || !strings.Contains(n.What, "5 times") {
					t.Errorf("flapping notice: %+v", n)
				}
			case flaps > 0:
				after = append(after, string(n.Kind))
			}
		}
	}
	// Once flapping, it is silent until steady for an hour; then one notice says where it ended: resolved.
	if flaps != 1 || len(after) != 1 || after[0] != "resolved" {
		t.Fatalf("flapping notices %d, then %v: %v", flaps, after, kinds(rounds))
	}
	if len(m.conds) != 0 {
		t.Errorf("settled condition kept: %v", m.conds)
	}
}

func TestMachine_StageChangeToldAtOnce(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	notAfter := t0.Add(20 * 24 * time.Hour)
	raise := func() {
		if cond, ok := CertExpiring("smtp.tls_cert", "/etc/cert.pem", "relay.test", notAfter, c.now); ok {
			m.Raise(c.now, cond)
		} else {
			m.Clear(c.now, Key(EventCertExpiring, "smtp.tls_cert"))
		}
	}
	var rounds []Round
	for c.now.Before(notAfter.Add(2 * 24 * time.Hour)) {
		raise()
		rounds = append(rounds, walk(m, c, c.now.Add(time.Hour), time.Hour)...)
	}
	var stages []string
	for _, r := range rounds {
		for _, n := range r.Notices {
			stages = append(stages, string(n.Kind)+":"+n.Severity.String())
		}
	}
	// 20 days before: warn (21 days); 7 days: crit; 1 day: crit; expired: crit; reminders every 24 h between.
	want := map[string]bool{"fired:warn": true, "changed:crit": true, "reminder:warn": true, "reminder:crit": true}
	changed := 0
	for _, s := range stages {
		if !want[s] {
			t.Errorf("unexpected notice %s", s)
		}
		if s == "changed:crit" {
			changed++
		}
	}
	if stages[0] != "fired:warn" || changed != 3 {
		t.Errorf("stages = %v; want fired:warn first and three changes (7 days, 1 day, expired)", stages)
	}
}

func TestMachine_BelowMinSeverityGoesToDigest(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	pbl := Listing("zen.spamhaus.org", "192.0.2.7", "127.0.0.11", "PBL: end-user (dynamic) range", true, "use the smart host", Route{Smarthost: "sh", Mode: "auto"})
	m.Raise(c.now, pbl)
	m.Note(c.now, "egress address changed from 192.0.2.6 to 192.0.2.7 (verdict smarthost)")
	if rs := walk(m, c, t0.Add(time.Hour), time.Minute); len(rs) != 0 {
		t.Fatalf("an info condition was sent: %v", kinds(rs))
	}
	if a := m.Alerts(); len(a) != 1 || a[0].State != "quiet" {
		t.Fatalf("alerts = %+v", a)
	}
	// The digest is due at 08:00 the next day.
	if due := m.DigestDue(); !due.Equal(time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("digest due %v", due)
	}
	if _, ok := m.TakeDigest(time.Date(2026, 12, 3, 7, 59, 0, 0, time.UTC), nil); ok {
		t.Fatal("digest before its time")
	}
	d, ok := m.TakeDigest(time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), []string{"egress ipv4 192.0.2.7: smarthost"})
	if !ok {
		t.Fatal("no digest at 08:00")
	}
	body := strings.Join(d.Lines, "\n")
	for _, want := range []string{
		"[info] 192.0.2.7 is listed in zen.spamhaus.org (PBL: end-user (dynamic) range)",
		"egress ipv4 192.0.2.7: smarthost",
		"firing: 192.0.2.7 is listed in zen.spamhaus.org",
		"egress address changed from 192.0.2.6 to 192.0.2.7",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("digest lacks %q:\n%s", want, body)
		}
	}
	if d.Status != StatusFiring || d.Summary != "digest for relay.test: 1 condition holds" || d.Event != EventDigest {
		t.Errorf("digest = %+v", d)
	}
	// The next one is a day later and says the period was quiet.
	if _, ok := m.TakeDigest(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), nil); ok {
		t.Fatal("a second digest within the day")
	}
	d, _ = m.TakeDigest(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC), nil)
	if !strings.Contains(strings.Join(d.Lines, "\n"), "nothing to report") {
		t.Errorf("quiet digest:\n%s", strings.Join(d.Lines, "\n"))
	}
}

func TestMachine_WeeklyDigestOnMonday(t *testing.T) {
	s := settings()
	s.Digest = "weekly"
	m := NewMachine(s, t0)
	if due := m.DigestDue(); !due.Equal(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)) || due.Weekday() != time.Monday {
		t.Fatalf("weekly digest due %v", due)
	}
	s.Digest = "off"
	m.SetSettings(s)
	if due := m.DigestDue(); !due.IsZero() {
		t.Fatalf("digest off but due %v", due)
	}
}

// The digest tells what was sent, and the conditions that hold even when everything was told already.
func TestMachine_DigestListsWhatWasTold(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, listed("192.0.2.7"))
	walk(m, c, t0.Add(time.Hour), time.Minute)
	d, ok := m.TakeDigest(time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), nil)
	body := strings.Join(d.Lines, "\n")
	if !ok || !strings.Contains(body, "told: firing: 192.0.2.7 is listed in bl.test") || !strings.Contains(body, "[crit] 192.0.2.7 is listed") {
		t.Fatalf("digest:\n%s", body)
	}
}

func TestMachine_ExpireClearsSilentSources(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, InboundAuth("192.0.2.50", 6, 10*time.Minute, []string{"exchange"}))
	rs := walk(m, c, t0.Add(2*time.Hour), time.Minute)
	if got := kinds(rs); len(got) != 2 || !strings.HasPrefix(got[0], "fired:") || !strings.HasPrefix(got[1], "resolved:") {
		t.Fatalf("a failed-login condition nobody raised again for 2 h: %v", got)
	}
}

// A channel failing for an hour is told on the other channel only; its next success resolves it there.
func TestMachine_ChannelFailingToldOnTheOther(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.ChannelResult(c.now, "webhook", false, "HTTP 500")
	if rs := walk(m, c, t0.Add(59*time.Minute), time.Minute); len(rs) != 0 {
		t.Fatalf("channel failure told before an hour: %v", kinds(rs))
	}
	rs := walk(m, c, t0.Add(62*time.Minute), 10*time.Second)
	if len(rs) != 1 || rs[0].Notices[0].Key != "alerts.channel/webhook" || rs[0].Notices[0].Only != "mail" {
		t.Fatalf("after an hour: %+v", rs)
	}
	if ns := forChannel(rs[0], "webhook"); len(ns) != 0 {
		t.Errorf("the failing webhook would get its own failure notice: %+v", ns)
	}
	m.ChannelResult(c.now, "webhook", true, "HTTP 200")
	rs = walk(m, c, c.now.Add(time.Minute), 10*time.Second)
	if got := kinds(rs); len(got) != 1 || got[0] != "resolved:alerts.channel/webhook" || rs[0].Notices[0].Only != "mail" {
		t.Fatalf("after the webhook recovered: %v", got)
	}
	// With one channel only, nobody can be told: nothing is raised.
	s := settings()
	s.Channels = []string{"webhook"}
	m = NewMachine(s, c.now)
	m.ChannelResult(c.now, "webhook", false, "HTTP 500")
	if rs := walk(m, c, c.now.Add(3*time.Hour), time.Minute); len(rs) != 0 {
		t.Fatalf("single channel: %v", kinds(rs))
	}
}

// Sync clears the conditions of an event that the source no longer reports, within its scope only.
func TestMachine_Sync(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Sync(c.now, EventListed, "", []Condition{listed("192.0.2.7"), listed("192.0.2.8")})
	walk(m, c, t0.Add(time.Minute), time.Second)
	m.Sync(c.now, EventListed, "bl.test/192.0.2.8", nil) // another scope's report: .7 untouched
	m.Sync(c.now, EventListed, "", []Condition{listed("192.0.2.7")})
	rs := walk(m, c, c.now.Add(time.Minute), time.Second)
	if got := kinds(rs); len(got) != 1 || got[0] != "resolved:listed/bl.test/192.0.2.8" {
		t.Fatalf("after sync: %v", got)
	}
}

// Restart: the state written by Changes and read by LoadMachine tells nothing twice, and a notice still
// waiting for its round is sent once after the restart.
func TestMachine_RestartWithoutResend(t *testing.T) {
	c := &clock{t0}
	m := NewMachine(settings(), c.now)
	m.Raise(c.now, listed("192.0.2.7"))
	walk(m, c, t0.Add(time.Minute), time.Second) // told
	m.Raise(c.now, listed("192.0.2.8"))          // waiting in the outbox
	store := map[string][]byte{}
	var bk []byte
	persist := func(m *Machine) {
		conds, b, err := m.Changes(true)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range conds {
			if v == nil {
				delete(store, k)
			} else {
				store[k] = v
			}
		}
		if b != nil {
			bk = b
		}
	}
	persist(m)

	c.add(5 * time.Minute)
	m2, errs := LoadMachine(settings(), c.now, store, bk)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m2.Raise(c.now, listed("192.0.2.7"))
	m2.Raise(c.now, listed("192.0.2.8"))
	rs := walk(m2, c, c.now.Add(2*time.Hour), time.Minute)
	if got := kinds(rs); len(got) != 1 || got[0] != "fired:listed/bl.test/192.0.2.8" {
		t.Fatalf("after the restart: %v; want only the notice that had not gone out", got)
	}
	persist(m2)
	m3, _ := LoadMachine(settings(), c.now, store, bk)
	if rs := walk(m3, c, c.now.Add(2*time.Hour), time.Minute); len(rs) != 0 {
		t.Fatalf("second restart re-sent: %v", kinds(rs))
	}
	if a := m3.Alerts(); len(a) != 2 {
		t.Fatalf("conditions after restarts: %+v", a)
	}
}

func TestLoadMachine_DropsUnreadableRecords(t *testing.T) {
	m, errs := LoadMachine(settings(), t0, map[string][]byte{"listed/x": []byte("{not json"), "a": []byte(`{"c":{"event":"b"}}`)}, []byte("nope"))
	if len(errs) != 3 || len(m.Alerts()) != 0 {
		t.Fatalf("errs %v alerts %v", errs, m.Alerts())
	}
	conds, bk, _ := m.Changes(true)
	if v, ok := conds["listed/x"]; !ok || v != nil || bk == nil {
		t.Errorf("unreadable records are not deleted on the next save: %v", conds)
	}
}

func TestMachine_NextWakesForEveryDeadline(t *testing.T) {
	m := NewMachine(settings(), t0)
	m.Raise(t0, deferred(60))
	if got := m.Next(t0); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("next with a pending condition = %v", got)
	}
	m.Raise(t0, listed("192.0.2.7"))
	if got := m.Next(t0); !got.Equal(t0.Add(GroupWindow)) {
		t.Errorf("next with a notice waiting = %v", got)
	}
}
