package alerts

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"ptrelay/queue"
)

// Config is what the manager takes from [alerts]. No channel configured means logs and metrics only: the
// conditions are still tracked (`ptrelay alerts list`, `ptrelay status`).
type Config struct {
	Settings
	MailTo     []string
	MailVia    string // "": alert mail goes through ptrelay's own queue
	WebhookURL string
	WebhookKey []byte // from webhook_secret_file; nil: unsigned
}

func (c Config) settings() Settings {
	s := c.Settings
	s.Channels = nil
	if len(c.MailTo) > 0 {
		s.Channels = append(s.Channels, "mail")
	}
	if c.WebhookURL != "" {
		s.Channels = append(s.Channels, "webhook")
	}
	return s
}

// Metrics receives the alert metrics (relay/metrics implements it); nil records nothing.
type Metrics interface {
	// AlertNotice counts one notice on one channel by its outcome: sent, queued, retried, failed.
	AlertNotice(event, channel, outcome string)
	// AlertsFiring sets the number of firing conditions per event.
	AlertsFiring(byEvent map[string]int)
}

// Options are the manager's inputs besides Config.
type Options struct {
	Store *queue.Store // the state tables, and the queue that carries alert mail when mail_via is empty
	Log   *slog.Logger
	Now   func() time.Time // nil: time.Now
	// Facts returns lines about the daemon for the digest (verdicts, queue counts); may be nil.
	Facts      func() []string
	Metrics    Metrics
	Version    string
	HTTPClient *http.Client // nil: a client with Standard Webhooks' timeout and no redirects
	// Sign returns the DKIM-Signature fields for alert mail sent through mail_via (ptrelay's own SMTP client,
	// which bypasses delivery, where the rest of ptrelay's mail is signed); nil fields when there is no key for
	// hostname's domain. nil: alert mail is not signed.
	Sign func(msg []byte) ([]byte, error)
}

// Manager runs the alert state machine for the daemon: it takes conditions from any goroutine without
// blocking, applies them on its own goroutine, keeps the state in the queue database, and hands the rounds to
// the channels. Delivery and inbound sessions never wait for it.
type Manager struct {
	o    Options
	log  *slog.Logger
	now  func() time.Time
	kick chan struct{}

	mu       sync.Mutex // guards the fields below
	m        *Machine
	cfg      Config
	channels []channel
	unsaved  map[string][]byte // condition records a failed write left behind
	unBook   []byte
	flushAt  time.Time // next write of word-only changes
	stopping bool      // the last step: record, send nothing (a round now would be lost half-sent)

	opsMu sync.Mutex
	ops   []func(*Machine, time.Time)
	hot   map[string]bool // keys raised and not cleared, so that the common "it works" calls cost nothing

	hook   *webhookChannel
	auth   *failureTracker
	policy *failureTracker

	ctx    context.Context // ends when Run returns; bounds mail sends
	cancel context.CancelFunc
	sends  sync.WaitGroup
}

// New loads the alert state from the queue database. Unreadable records are logged and dropped.
func New(cfg Config, o Options) (*Manager, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = newHTTPClient()
	}
	mg := &Manager{o: o, log: o.Log.With("component", "alerts"), now: o.Now, kick: make(chan struct{}, 1),
		hot: map[string]bool{}, unsaved: map[string][]byte{},
		auth: newFailureTracker(authWindow, authLimit), policy: newFailureTracker(policyWindow, policyLimit)}
	mg.ctx, mg.cancel = context.WithCancel(context.Background())
	conds, bk, err := loadState(o.Store)
	if err != nil {
		return nil, err
	}
	m, errs := LoadMachine(cfg.settings(), mg.now(), conds, bk)
	for _, e := range errs {
		mg.log.Warn("alerts: " + e.Error())
	}
	mg.m = m
	for _, a := range m.Alerts() {
		mg.hot[a.Key] = true
	}
	mg.hook = &webhookChannel{version: o.Version, store: o.Store, client: o.HTTPClient, now: mg.now, log: mg.log,
		kick: make(chan struct{}, 1), report: mg.webhookResult}
	mg.setConfig(cfg)
	return mg, nil
}

// Reload applies a new [alerts] configuration; conditions, rounds and pending webhook notices are kept.
func (mg *Manager) Reload(cfg Config) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.setConfig(cfg)
	mg.m.SetSettings(cfg.settings())
	mg.wake()
}

// setConfig builds the channels of cfg; mg.mu is held (or mg is not shared yet).
func (mg *Manager) setConfig(cfg Config) {
	mg.cfg = cfg
	loc := cfg.Location
	if loc == nil {
		loc = time.Local
	}
	mg.channels = nil
	switch {
	case len(cfg.MailTo) > 0 && cfg.MailVia != "":
		mg.channels = append(mg.channels, &smtpChannel{via: cfg.MailVia, to: cfg.MailTo, hostname: cfg.Hostname, loc: loc,
			now: mg.now, retries: mailRetries, report: mg.mailResult, ctx: mg.ctx, wg: &mg.sends, sign: mg.o.Sign})
	case len(cfg.MailTo) > 0:
		mg.channels = append(mg.channels, &queueChannel{store: mg.o.Store, to: cfg.MailTo, hostname: cfg.Hostname, loc: loc,
			now: mg.now, queued: mg.mailQueued, report: mg.mailResult})
	}
	mg.hook.setTarget(cfg.WebhookURL, cfg.WebhookKey, cfg.Hostname)
	if cfg.WebhookURL != "" {
		mg.channels = append(mg.channels, mg.hook)
	}
}

// Run applies conditions and sends rounds until ctx ends, then waits for the sends in flight (each bounded).
// The queue database must stay open until Run has returned.
func (mg *Manager) Run(ctx context.Context) {
	var workers sync.WaitGroup
	workers.Add(1)
	go func() {
		defer workers.Done()
		mg.hook.run(mg.ctx)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := mg.step(mg.now())
		wait := time.Minute
		if !next.IsZero() {
			wait = min(max(next.Sub(mg.now()), 10*time.Millisecond), time.Minute)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			mg.cancel()
			workers.Wait()
			mg.sends.Wait()
			mg.mu.Lock()
			mg.flushAt, mg.stopping = time.Time{}, true
			mg.mu.Unlock()
			mg.step(mg.now()) // record what the last sends reported, and every word
			return
		case <-mg.kick:
		case <-timer.C:
		}
	}
}

func (mg *Manager) wake() {
	select {
	case mg.kick <- struct{}{}:
	default:
	}
}

// enqueue hands op to the manager's goroutine.
func (mg *Manager) enqueue(op func(*Machine, time.Time)) {
	mg.opsMu.Lock()
	mg.ops = append(mg.ops, op)
	mg.opsMu.Unlock()
	mg.wake()
}

// step applies what came in, moves the machine to now, persists the changes and sends what is due. It returns
// when the machine next needs to run.
func (mg *Manager) step(now time.Time) time.Time {
	mg.opsMu.Lock()
	ops := mg.ops
	mg.ops = nil
	mg.opsMu.Unlock()

	mg.mu.Lock()
	for _, op := range ops {
		op(mg.m, now)
	}
	mg.m.Tick(now)
	var round Round
	haveRound := false
	if !mg.stopping {
		round, haveRound = mg.m.TakeRound(now)
	}
	var digest Notice
	haveDigest := false
	if due := mg.m.DigestDue(); !mg.stopping && !due.IsZero() && !now.Before(due) {
		mg.mu.Unlock()
		var facts []string
		if mg.o.Facts != nil {
			facts = mg.o.Facts()
		}
		mg.mu.Lock()
		digest, haveDigest = mg.m.TakeDigest(now, facts)
	}
	mg.save(now)
	next := mg.m.Next(now)
	firing := map[string]int{}
	active := map[string]bool{}
	for _, a := range mg.m.Alerts() {
		active[a.Key] = true
		if a.State != "pending" {
			firing[string(a.Event)]++
		}
	}
	channels := slices.Clone(mg.channels)
	mg.mu.Unlock()
	mg.forgetCleared(active)

	if mg.o.Metrics != nil {
		mg.o.Metrics.AlertsFiring(firing)
	}
	if haveRound {
		mg.dispatch(round, channels)
	}
	if haveDigest {
		mg.dispatch(Round{Notices: []Notice{digest}, At: now}, channels)
	}
	return next
}

// forgetCleared drops from hot the keys the machine cleared by itself (Expire, Sync), unless an operation that
// may raise one again is still waiting.
func (mg *Manager) forgetCleared(active map[string]bool) {
	mg.opsMu.Lock()
	defer mg.opsMu.Unlock()
	if len(mg.ops) > 0 {
		return
	}
	for k := range mg.hot {
		if !active[k] {
			delete(mg.hot, k)
		}
	}
}

// flushEvery is how often changes of words only (a queue's age) are written.
const flushEvery = 10 * time.Minute

// save writes the machine's changes (mg.mu held). A failed write is kept and tried again at the next step:
// the state in memory stays right, and a restart in between at worst repeats a notice.
func (mg *Manager) save(now time.Time) {
	all := !now.Before(mg.flushAt)
	if all {
		mg.flushAt = now.Add(flushEvery)
	}
	conds, bk, err := mg.m.Changes(all)
	if err != nil {
		mg.log.Error("alerts: encoding the state", "err", err)
		return
	}
	for k, v := range conds {
		mg.unsaved[k] = v
	}
	if bk != nil {
		mg.unBook = bk
	}
	if len(mg.unsaved) == 0 && mg.unBook == nil {
		return
	}
	if err := saveState(mg.o.Store, mg.unsaved, mg.unBook); err != nil {
		mg.log.Error("alerts: writing the alert state to the queue database; will try again", "err", err)
		return
	}
	clear(mg.unsaved)
	mg.unBook = nil
}

// dispatch logs the round and hands it to every channel.
func (mg *Manager) dispatch(r Round, channels []channel) {
	for _, n := range r.Notices {
		level := slog.LevelInfo
		switch {
		case n.Status == StatusResolved || n.Severity == Info:
		case n.Severity == Crit:
			level = slog.LevelError
		default:
			level = slog.LevelWarn
		}
		attrs := []any{"event", string(n.Event), "status", string(n.Status), "kind", string(n.Kind),
			"severity", n.Severity.String(), "summary", n.Summary}
		if n.Subject != "" {
			attrs = append(attrs, "subject", n.Subject)
		}
		if n.Fix != "" {
			attrs = append(attrs, "fix", n.Fix)
		}
		mg.log.Log(context.Background(), level, "alert", attrs...)
	}
	for _, ch := range channels {
		if ns := forChannel(r, ch.name()); len(ns) > 0 {
			ch.deliver(ns)
		}
	}
}

func (mg *Manager) count(ns []Notice, channel, outcome string) {
	if mg.o.Metrics == nil {
		return
	}
	for _, n := range ns {
		mg.o.Metrics.AlertNotice(string(n.Event), channel, outcome)
	}
}

// mailResult is the mail channels' report of one attempt: it feeds the channel's health and the metrics.
func (mg *Manager) mailResult(ok bool, detail string, ns []Notice, final bool) {
	switch {
	case ok:
		mg.count(ns, "mail", "sent")
		mg.log.Info("alerts: alert mail sent", "reply", detail)
	case final:
		mg.count(ns, "mail", "failed")
		mg.log.Error("alerts: alert mail could not be sent", "err", detail)
	default:
		mg.count(ns, "mail", "retried")
		mg.log.Warn("alerts: alert mail attempt failed; will retry", "err", detail)
	}
	mg.enqueue(func(m *Machine, now time.Time) { m.ChannelResult(now, "mail", ok, detail) })
}

func (mg *Manager) mailQueued(id string, ns []Notice) {
	mg.count(ns, "mail", "queued")
	mg.log.Info("alerts: alert mail queued", "id", id)
	mg.enqueue(func(m *Machine, now time.Time) {
		m.TrackQueuedMail(id)
		m.ChannelResult(now, "mail", true, "queued")
	})
}

func (mg *Manager) webhookResult(ok bool, detail string, event Event, final bool) {
	ns := []Notice{{Event: event}}
	switch {
	case ok:
		mg.count(ns, "webhook", "sent")
	case final:
		mg.count(ns, "webhook", "failed")
	default:
		mg.count(ns, "webhook", "retried")
	}
	mg.enqueue(func(m *Machine, now time.Time) { m.ChannelResult(now, "webhook", ok, detail) })
}

// testTimeout bounds each channel's test attempt (the channels are tried side by side).
const testTimeout = 25 * time.Second

// Test sends a test notice on every configured channel at once, bypassing grouping and the cap, and says what
// happened on each. No channel configured gives no results.
func (mg *Manager) Test(ctx context.Context) []ChannelResult {
	mg.mu.Lock()
	channels := slices.Clone(mg.channels)
	host := mg.cfg.Hostname
	mg.mu.Unlock()
	out := make([]ChannelResult, len(channels))
	var wg sync.WaitGroup
	for i, ch := range channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := TestNotice(host, mg.now())
			tctx, cancel := context.WithTimeout(ctx, testTimeout)
			defer cancel()
			out[i] = ch.test(tctx, n)
			mg.count([]Notice{n}, ch.name(), out[i].Outcome)
			mg.log.Info("alerts: test notice", "channel", out[i].Channel, "outcome", out[i].Outcome, "detail", out[i].Detail)
		}()
	}
	wg.Wait()
	return out
}

// Alerts lists the conditions that hold, most severe first.
func (mg *Manager) Alerts() []Alert {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.m.Alerts()
}

// QueuedMail returns the IDs of alert mail handed to ptrelay's own queue that may still be there.
func (mg *Manager) QueuedMail() []string {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.m.QueuedMail()
}

// ForgetQueuedMail drops IDs of alert mail that has left the queue.
func (mg *Manager) ForgetQueuedMail(ids []string) {
	if len(ids) == 0 {
		return
	}
	mg.enqueue(func(m *Machine, _ time.Time) { m.ForgetQueuedMail(ids) })
}

// SendTest builds the channels of cfg and sends a test notice on each, without a running daemon (the CLI's
// `ptrelay alerts test` when no daemon answers). store carries the mail when mail_via is empty; it may be nil
// for webhook-only configurations.
func SendTest(ctx context.Context, cfg Config, store *queue.Store, version string) []ChannelResult {
	mg := &Manager{o: Options{Store: store, Version: version, HTTPClient: newHTTPClient()}, log: slog.New(slog.DiscardHandler),
		now: time.Now, kick: make(chan struct{}, 1), hot: map[string]bool{}}
	mg.ctx, mg.cancel = context.WithCancel(ctx)
	defer mg.cancel()
	mg.hook = &webhookChannel{version: version, client: mg.o.HTTPClient, now: mg.now, log: mg.log, kick: make(chan struct{}, 1),
		report: func(bool, string, Event, bool) {}}
	mg.setConfig(cfg)
	for _, ch := range mg.channels {
		if q, ok := ch.(*queueChannel); ok {
			q.queued = func(string, []Notice) {} // nobody tracks it: the daemon is not running
		}
	}
	return mg.Test(ctx)
}
