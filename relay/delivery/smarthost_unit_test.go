package delivery

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// TestEventLog_SlidingMinute: "30/min" is 30 in any 60 seconds. The 31st in the same minute does not fit, and
// fits again once the first has left the window: a sliding window, not a bucket that refills (a token bucket with
// burst 30 would admit about 60 in the first minute).
func TestEventLog_SlidingMinute(t *testing.T) {
	var l eventLog
	sent := 0
	for i := 0; i < 180; i++ { // an attempt every second for 3 minutes, sending whatever fits
		now := t0.Add(time.Duration(i) * time.Second)
		if l.freesAt(now, time.Minute, 30, 1).Equal(now) {
			l.add(now, 1)
			sent++
		}
		if got := l.sum(now, time.Minute); got > 30 {
			t.Fatalf("at %v: %d in the last minute, over the budget of 30", now.Sub(t0), got)
		}
	}
	// 30 in each minute: 90. A token bucket (rate 30/min, burst 30) would have let about 120 through.
	if sent > 90 || sent < 87 {
		t.Errorf("sent %d in 3 minutes under 30/min, want 90 (or a bucket's width less)", sent)
	}

	var burst eventLog
	for i := 0; i < 30; i++ {
		burst.add(t0.Add(time.Duration(i)*time.Second), 1)
	}
	at := t0.Add(30 * time.Second)
	free := burst.freesAt(at, time.Minute, 30, 1)
	if !free.After(at) {
		t.Fatalf("the 31st message in a minute fits at once")
	}
	if want := t0.Add(time.Minute + time.Second); !free.Equal(want) {
		t.Errorf("the 31st fits at %v, want %v (when the first leaves the window)", free.Sub(t0), want.Sub(t0))
	}
	if got := burst.freesAt(free, time.Minute, 30, 1); !got.Equal(free) {
		t.Errorf("at its time the 31st still waits until %v", got.Sub(t0))
	}
	if got := burst.freesAt(at, time.Minute, 30, 5); !got.Equal(t0.Add(time.Minute + 5*time.Second)) {
		t.Errorf("5 more fit at %v, want when the 5th oldest leaves", got.Sub(t0))
	}
}

// TestEventLog_DayAndRestore: a day window counts across the hour where second buckets become minute buckets,
// survives being written as minutes and read back, and forgets what is older than a day.
func TestEventLog_DayAndRestore(t *testing.T) {
	var l eventLog
	for i := 0; i < 10; i++ {
		l.add(t0.Add(time.Duration(i)*time.Hour), 100)
	}
	now := t0.Add(10*time.Hour + time.Minute)
	l.prune(now)
	if got := l.sum(now, 24*time.Hour); got != 1000 {
		t.Fatalf("day sum %d, want 1000", got)
	}
	if got := l.sum(now, time.Hour); got != 0 {
		t.Errorf("last hour %d, want 0", got)
	}
	var back eventLog
	back.restore(l.minutes(), now)
	if got := back.sum(now, 24*time.Hour); got != 1000 {
		t.Errorf("restored day sum %d, want 1000", got)
	}
	later := t0.Add(24*time.Hour + 5*time.Hour + 2*time.Minute)
	back.prune(later)
	if got := back.sum(later, 24*time.Hour); got != 400 {
		t.Errorf("a day after the first sends, %d count, want 400 (the sends of hours 6 to 9)", got)
	}
	back.refund(t0.Add(9*time.Hour), 50)
	if got := back.sum(later, 24*time.Hour); got != 350 {
		t.Errorf("after a refund of 50: %d, want 350", got)
	}
}

// TestSmarthostClass: one row per provider reply that is about the host, its quota or the sender rather than the
// recipient.
func TestSmarthostClass(t *testing.T) {
	reply := func(code int, e smtpstatus.Enhanced, text string) smtpstatus.Status {
		return smtpstatus.Status{Code: code, Enhanced: e, Text: text}
	}
	for _, c := range []struct {
		name  string
		st    stage
		s     smtpstatus.Status
		class hostClass
	}{
		{"Google relay daily limit at RCPT", stRcpt, reply(550, smtpstatus.Enhanced{5, 4, 5}, "Daily SMTP relay limit exceeded for user. For more information on SMTP relay sending limits please contact your administrator"), classQuota},
		{"Google relay customer limit", stMail, reply(550, smtpstatus.Enhanced{5, 7, 1}, "Daily SMTP relay limit exceeded for customer"), classQuota},
		{"SES daily quota", stMail, reply(454, smtpstatus.Enhanced{}, "Throttling failure: Daily message quota exceeded."), classQuota},
		{"Microsoft submission quota", stData, reply(554, smtpstatus.Enhanced{5, 2, 0}, "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"), classQuota},
		{"SES sending rate", stMail, reply(454, smtpstatus.Enhanced{}, "Throttling failure: Maximum sending rate exceeded."), classHost},
		{"Microsoft thread limit", stData, reply(432, smtpstatus.Enhanced{4, 3, 2}, "STOREDRV.ClientSubmit; sender thread limit exceeded"), classHost},
		{"421 at MAIL", stMail, reply(421, smtpstatus.Enhanced{4, 3, 2}, "Service shutting down"), classHost},
		{"421 at RCPT", stRcpt, reply(421, smtpstatus.Enhanced{4, 7, 0}, "Too many errors"), classHost},
		{"basic auth retired", stMail, reply(550, smtpstatus.Enhanced{5, 7, 30}, "Basic authentication is not supported for Client Submission."), classHost},
		{"not logged in", stMail, reply(530, smtpstatus.Enhanced{5, 7, 57}, "Client not authenticated to send mail."), classHost},
		{"sender refused at MAIL", stMail, reply(550, smtpstatus.Enhanced{5, 7, 1}, "Sender address rejected: not owned by user relay@isp.test"), classSender},
		{"send-as after DATA", stData, reply(554, smtpstatus.Enhanced{5, 2, 252}, "SendAsDenied; relay@contoso.com not allowed to send as ceo@contoso.com"), classSender},
		{"5.7.60 after DATA", stData, reply(550, smtpstatus.Enhanced{5, 7, 60}, "SMTP; Client does not have permissions to send as this sender"), classSender},
		{"4xx at MAIL is not the sender's", stMail, reply(451, smtpstatus.Enhanced{4, 3, 0}, "try later"), classRecipient},
		{"unknown recipient", stRcpt, reply(550, smtpstatus.Enhanced{5, 1, 1}, "No such user"), classRecipient},
		{"mailbox full is the recipient's", stRcpt, reply(552, smtpstatus.Enhanced{5, 2, 2}, "Mailbox full"), classRecipient},
		{"content refused", stData, reply(554, smtpstatus.Enhanced{5, 6, 0}, "Message rejected"), classRecipient},
		{"ours: lost connection", stData, ours(stBadConn, "lost connection during DATA"), classRecipient},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := smarthostClass(c.st, c.s); got != c.class {
				t.Errorf("%s at %s: %s, want %s", c.s, c.st, got, c.class)
			}
		})
	}
}

// TestHostBook_DownPauseProbe: after smarthost_failover_after host-level failures in a row the host is down; its
// pause doubles from down_min to down_max with each failed probe; once the pause is over one transaction probes
// and the others keep away; a success puts it back up and resets the pause.
func TestHostBook_DownPauseProbe(t *testing.T) {
	cfg := &Settings{Failover: FailoverSettings{After: 3, DownMin: time.Minute, DownMax: 5 * time.Minute},
		Smarthosts: []Smarthost{{Name: "a", MaxRecipients: 10}, {Name: "b", MaxRecipients: 10}}}
	b := newHostBook(nil, nil)
	fail := decision{Outcome: Deferred, Status: ours(stNoAnswer, "connect failed")}
	now := t0
	msg := func() *txn { return &txn{msg: testMessage("x@sender.test"), rcpts: []rcptRef{{Addr: "r@far.test"}}} }
	for i := 1; i <= 2; i++ {
		if down, _ := b.failure("a", fail, now, cfg.Failover); down {
			t.Fatalf("down after %d failures, want 3", i)
		}
		if c := b.choose(cfg, msg(), now); c.host == nil || c.host.Name != "a" {
			t.Fatalf("after %d failures the first host is no longer chosen: %+v", i, c)
		}
	}
	var pauses []time.Duration
	down, pause := b.failure("a", fail, now, cfg.Failover)
	if !down {
		t.Fatal("not down after 3 failures in a row")
	}
	pauses = append(pauses, pause)
	if c := b.choose(cfg, msg(), now.Add(pause-time.Second)); c.host == nil || c.host.Name != "b" {
		t.Fatalf("a down host is still chosen: %+v", c)
	}
	for range 4 {
		now = now.Add(pause)
		probe, other := msg(), msg()
		if c := b.choose(cfg, probe, now); c.host == nil || c.host.Name != "a" {
			t.Fatalf("after the pause the host is not probed: %+v", c)
		}
		b.claimProbe("a", probe, now)
		if c := b.choose(cfg, other, now); c.host == nil || c.host.Name != "b" {
			t.Fatalf("a second transaction joins the probe: %+v", c)
		}
		pinned := msg()
		pinned.sh.pinned = "a"
		if c := b.choose(cfg, pinned, now); c.host == nil || c.host.Name != "a" || !b.probing("a", now) {
			t.Fatalf("mail with no other host does not wait behind the probe: %+v", c)
		}
		if down, pause = b.failure("a", fail, now, cfg.Failover); !down {
			t.Fatal("a failed probe does not put the host down again at once")
		}
		pauses = append(pauses, pause)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i := range want {
		if pauses[i] != want[i] {
			t.Fatalf("pauses %v, want %v", pauses, want)
		}
	}
	// The admin's `queue retry` ends the pause: the next delivery probes.
	b.endPauses(now.Add(time.Second))
	if c := b.choose(cfg, msg(), now.Add(time.Second)); c.host == nil || c.host.Name != "a" {
		t.Fatalf("after endPauses the host is not probed: %+v", c)
	}
	now = now.Add(pause)
	probe := msg()
	b.claimProbe("a", probe, now)
	if !b.success("a", now) {
		t.Error("success did not report the host was down")
	}
	if c := b.choose(cfg, msg(), now); c.host == nil || c.host.Name != "a" {
		t.Fatalf("after a good probe the host is not first again: %+v", c)
	}
	if _, pause = b.failure("a", fail, now, cfg.Failover); pause != 0 {
		t.Errorf("after a success one failure puts the host down again (pause %v)", pause)
	}
}

// TestChoose: the senders filter, when_limited and pinning, and a sender every host refused.
func TestChoose(t *testing.T) {
	limit := []config.Rate{{N: 1, Per: time.Minute}}
	cfg := &Settings{Failover: FailoverSettings{After: 3, DownMin: time.Minute, DownMax: time.Hour}, Smarthosts: []Smarthost{
		{Name: "m365", MaxRecipients: 100, MessageRate: limit, Senders: []string{"contoso.com"}},
		{Name: "waiter", MaxRecipients: 100, MessageRate: limit, Wait: true, Senders: []string{"wait.test"}},
		{Name: "isp", MaxRecipients: 100},
	}}
	b := newHostBook(nil, nil)
	mk := func(from string) *txn { return &txn{msg: testMessage(from), rcpts: []rcptRef{{Addr: "r@far.test"}}} }
	name := func(c choice) string {
		if c.host == nil {
			return "(" + string(c.verdict.Outcome) + " " + replyText(c.verdict.Status) + ")"
		}
		return c.host.Name
	}
	if got := name(b.choose(cfg, mk("a@contoso.com"), t0)); got != "m365" {
		t.Errorf("contoso.com sender: %s, want m365", got)
	}
	if got := name(b.choose(cfg, mk("a@other.test"), t0)); got != "isp" {
		t.Errorf("other sender: %s, want isp (m365 carries contoso.com only)", got)
	}
	if got := name(b.choose(cfg, mk(""), t0)); got != "m365" {
		t.Errorf("null sender: %s, want the first host", got)
	}
	b.reserve(&cfg.Smarthosts[0], mk("a@contoso.com"), t0)
	if got := name(b.choose(cfg, mk("b@contoso.com"), t0)); got != "isp" {
		t.Errorf("m365 over its budget, when_limited next: %s, want isp", got)
	}
	b.reserve(&cfg.Smarthosts[1], mk("a@wait.test"), t0)
	c := b.choose(cfg, mk("b@wait.test"), t0)
	if c.host != nil || !c.verdict.NoAttempt || !c.verdict.RetryAt.Equal(t0.Add(time.Minute+time.Second)) {
		t.Errorf("when_limited wait: %s (retry at %v), want a wait until the window frees", name(c), c.verdict.RetryAt)
	}
	pinned := mk("b@contoso.com")
	pinned.sh.pinned = "m365"
	if c := b.choose(cfg, pinned, t0); c.host != nil || !c.verdict.NoAttempt {
		t.Errorf("pinned to a limited host: %s, want a wait, never another host", name(c))
	}
	refused := decision{Outcome: Bounced, Status: smtpstatus.Status{Code: 550, Enhanced: smtpstatus.Enhanced{5, 7, 1}, Text: "not your sender"}}
	x := mk("a@contoso.com")
	x.tried(&cfg.Smarthosts[0], refused, "m365/h[ip]:587", classSender)
	if c := b.choose(cfg, x, t0.Add(time.Hour)); c.host == nil || c.host.Name != "isp" {
		t.Errorf("m365 refused the sender: %s, want isp next", name(c))
	}
	x.tried(&cfg.Smarthosts[2], refused, "isp/h[ip]:587", classSender)
	if c := b.choose(cfg, x, t0.Add(time.Hour)); c.host != nil || c.verdict.Outcome != Bounced || c.relay != "isp/h[ip]:587" {
		t.Errorf("every host allowed for the sender refused it: %s, want the last refusal to bounce", name(c))
	}
	y := mk("a@contoso.com")
	y.tried(&cfg.Smarthosts[2], refused, "isp/h[ip]:587", classSender)
	y.tried(&cfg.Smarthosts[0], decision{Outcome: Deferred, Status: ours(stNoAnswer, "connect failed")}, "none", classHost)
	if c := b.choose(cfg, y, t0.Add(time.Hour)); c.host != nil || c.verdict.Outcome != Deferred {
		t.Errorf("one refusal, the other host unreachable: %s, want deferred", name(c))
	}
	none := &Settings{Smarthosts: []Smarthost{{Name: "m365", Senders: []string{"contoso.com"}}}}
	if c := b.choose(none, mk("a@other.test"), t0); c.host != nil || c.verdict.Outcome != Deferred ||
		c.verdict.Status.Enhanced != (smtpstatus.Enhanced{4, 7, 0}) {
		t.Errorf("no host may carry the sender: %s, want deferred 4.7.0", name(c))
	}
}

func testMessage(from string) *queue.Message {
	return &queue.Message{ID: "TEST", Envelope: queue.Envelope{From: from}}
}

// TestHostFix: the host-level replies that have a fix on this side say it.
func TestHostFix(t *testing.T) {
	h := &Smarthost{Name: "m365", Username: "relay@contoso.com"}
	for _, c := range []struct{ reply, want string }{
		{"550 5.7.30 Basic authentication is not supported for Client Submission.", `auth = "xoauth2"`},
		{"432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "max_connections = 3"},
		{"454 Throttling failure: Maximum sending rate exceeded.", "message_rate"},
		{"530 5.7.57 Client not authenticated to send mail.", "username"},
		{"421 4.3.2 Service not available", ""},
	} {
		code, _ := strconv.Atoi(c.reply[:3])
		if got := hostFix(h, smtpstatus.ParseReply(code, c.reply[4:])); c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: fix %q, want one with %q", c.reply, got, c.want)
		}
	}
}
