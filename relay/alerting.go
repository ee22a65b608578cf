package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/admin"
	"ptrelay/relay/alerts"
)

// The alert conditions the daemon itself watches: the egress checker's results (as they come), and on a
// timer the queue, the free space of data_dir, DNS and the STARTTLS certificate. Delivery-side conditions
// (smart host down or refusing the login, TLS-policy deferrals, OAuth secret dates) are raised through the
// alert manager's methods by the code that knows them.

const (
	// alertCheckEvery is how often the queue and the disk are looked at.
	alertCheckEvery = 30 * time.Second
	// dnsProbeEvery is how often DNS is asked whether it answers (besides every lookup delivery makes).
	dnsProbeEvery = time.Minute
	// certCheckEvery is how often the certificate's dates are compared with the clock.
	certCheckEvery = 10 * time.Minute
	// diskClearFactor: disk.low clears only above this multiple of the threshold (10% -> 12%).
	diskClearFactor = 1.2
)

// alertsConfig maps [alerts] onto the alert manager. The webhook secret file is read here (serve checked it
// with CheckSecrets first).
func alertsConfig(cfg *config.Config) (alerts.Config, error) {
	key, err := cfg.WebhookKey()
	if err != nil {
		return alerts.Config{}, fmt.Errorf("alerts.webhook_secret_file: %w", err)
	}
	a := cfg.Alerts
	return alerts.Config{Settings: alertsSettings(cfg), MailTo: a.MailTo, MailVia: a.MailVia, WebhookURL: a.WebhookURL,
		WebhookKey: key}, nil
}

// alertsConfig is alertsConfig with the daemon's test seams.
func (r *Relay) alertsConfig(cfg *config.Config) (alerts.Config, error) {
	ac, err := alertsConfig(cfg)
	ac.GroupWindow = r.opts.AlertGroupWindow
	return ac, err
}

// alertsSettings are the state machine's keys of [alerts] (a validated configuration).
func alertsSettings(cfg *config.Config) alerts.Settings {
	sev, _ := alerts.ParseSeverity(cfg.Alerts.MinSeverity)
	a := cfg.Alerts
	return alerts.Settings{Hostname: cfg.Hostname, MinSeverity: sev, Hold: a.Hold.D(), Repeat: a.Repeat.D(), Digest: a.Digest}
}

// alertRoute says what happens to mail when direct delivery is unfit, for the notices' words: the first smart
// host of the list is where it goes while that host is up.
func alertRoute(cfg *config.Config) alerts.Route {
	sh := ""
	if cfg.HasSmarthosts() {
		sh = cfg.Smarthosts[0].Host()
	}
	return alerts.Route{Smarthost: sh, Mode: string(cfg.EffectiveRoutingMode()), Reroute: cfg.Routing.Reroute}
}

// seenDirect remembers the families that were fit for direct delivery since start: a smarthost verdict is
// news only after a direct-ok one (an install on a dynamic line is smarthost from day one, and knows it).
type seenDirect struct {
	mu  sync.Mutex
	fam map[string]bool
}

func (s *seenDirect) mark(f string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fam == nil {
		s.fam = map[string]bool{}
	}
	s.fam[f] = true
}

func (s *seenDirect) seen(f string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fam[f]
}

// egressChecked turns one egress check run into conditions: the verdict, each blocklist, port 25, and a
// digest line when only the address changed.
func (r *Relay) egressChecked(prev, cur dnscheck.Report) {
	cfg := r.cfg.Load()
	route := alertRoute(cfg)
	fam := cur.Family.String()
	ip := cur.Egress.IP.String()

	switch cur.Verdict {
	case dnscheck.VerdictDirectOK:
		r.seenDirect.mark(fam)
		r.alerts.Clear(alerts.EventVerdict, fam)
	case dnscheck.VerdictSmarthost:
		if r.seenDirect.seen(fam) || route.Smarthost == "" || r.alerts.Holds(alerts.EventVerdict, fam) {
			var failing []alerts.Finding
			for _, c := range cur.Checks {
				if c.Blocking && (c.Status == dnscheck.StatusFail || c.Status == dnscheck.StatusPermError) {
					f := alerts.Finding{Title: c.Title, Detail: c.Detail, Fix: c.Fix}
					if zone, ok := strings.CutPrefix(c.ID, "dnsbl:"); ok && len(c.Codes) > 0 {
						codes, meaning, _ := decodeListing(zone, c.Codes)
						f.Title, f.Detail = "", alerts.ListingWords(zone, ip, codes, meaning)
					}
					failing = append(failing, f)
				}
			}
			r.alerts.Raise(alerts.Verdict(fam, ip, failing, route))
		}
	}

	if !cur.Held {
		for _, c := range cur.Checks {
			r.checkAlert(c, fam, ip, route)
		}
	}
	r.clearStaleListings()

	if prev.Egress.IP.IsValid() && cur.Egress.IP.IsValid() && prev.Egress.IP != cur.Egress.IP && prev.Verdict == cur.Verdict {
		r.alerts.Note(fmt.Sprintf("egress address (%s) changed from %s to %s; verdict still %s", fam, prev.Egress.IP, cur.Egress.IP, cur.Verdict))
	}
}

// checkAlert raises or clears the condition of one check; a temporary error changes nothing.
func (r *Relay) checkAlert(c dnscheck.Check, fam, ip string, route alerts.Route) {
	if c.Status == dnscheck.StatusTempError {
		return
	}
	if zone, ok := strings.CutPrefix(c.ID, "dnsbl:"); ok {
		if c.Status != dnscheck.StatusFail {
			r.alerts.Clear(alerts.EventListed, zone+"/"+ip)
			return
		}
		codes, meaning, dynamic := decodeListing(zone, c.Codes)
		r.alerts.Raise(alerts.Listing(zone, ip, codes, meaning, dynamic, c.Fix, route))
		return
	}
	if c.ID == "port25" {
		switch c.Status {
		case dnscheck.StatusFail:
			r.alerts.Raise(alerts.Port25Blocked(fam, r.cfg.Load().Egress.Port25Probe, c.Detail, c.Fix, route))
		case dnscheck.StatusPass:
			r.alerts.Clear(alerts.EventPort25, fam)
		}
	}
}

// decodeListing says what a blocklist's return codes mean: the codes, their meanings, and whether the list
// calls the address dynamic (Spamhaus PBL).
func decodeListing(zone string, codes []netip.Addr) (codeText, meaning string, dynamic bool) {
	var cs, ms []string
	for _, code := range codes {
		d := dnscheck.DecodeDNSBL(zone, code)
		cs = append(cs, code.String())
		if !slices.Contains(ms, d.Meaning) {
			ms = append(ms, d.Meaning)
		}
		dynamic = dynamic || d.Dynamic
	}
	return strings.Join(cs, ", "), strings.Join(ms, "; "), dynamic
}

// clearStaleListings clears listings of addresses that are no longer any family's egress address.
func (r *Relay) clearStaleListings() {
	current := map[string]bool{}
	for _, rep := range r.checker.Reports() {
		if rep.Egress.IP.IsValid() {
			current[rep.Egress.IP.String()] = true
		}
	}
	for _, a := range r.alerts.Alerts() {
		if a.Event != alerts.EventListed {
			continue
		}
		if i := strings.LastIndexByte(a.Subject, '/'); i >= 0 && !current[a.Subject[i+1:]] {
			r.alerts.Clear(alerts.EventListed, a.Subject)
		}
	}
}

// authObserved receives every inbound AUTH outcome.
func (r *Relay) authObserved(client netip.Addr, user string, ok bool) {
	if ok {
		r.alerts.AuthSucceeded(client.String())
	} else {
		r.alerts.AuthFailed(client.String(), user)
	}
}

// watchAlerts runs the timed checks until ctx ends.
func (r *Relay) watchAlerts(ctx context.Context) {
	every := r.opts.AlertCheckEvery
	if every <= 0 {
		every = alertCheckEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastDNS, lastCert time.Time
	for {
		now := time.Now()
		r.queueAlerts(now)
		r.diskAlerts()
		if now.Sub(lastDNS) >= min(dnsProbeEvery, max(every, time.Second)) {
			lastDNS = now
			r.dnsAlerts(ctx)
		}
		if now.Sub(lastCert) >= certCheckEvery {
			lastCert = now
			r.expiryAlerts(now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// queueAlerts raises or clears queue.oldest and queue.deferred, with hysteresis: raised above the threshold,
// cleared below half of it. Alert mail that went through the queue is left out.
func (r *Relay) queueAlerts(now time.Time) {
	a := r.cfg.Load().Alerts
	lifetime := r.cfg.Load().Queue.Lifetime.D()
	st, err := r.store.Stats()
	if err != nil {
		return
	}
	deferred := st.ByState[queue.StateDeferred]
	waiting := deferred + st.ByState[queue.StateQueued] + st.ByState[queue.StateActive]
	var alertOldest time.Time
	var gone []string
	for _, id := range r.alerts.QueuedMail() {
		m, err := r.store.Get(id)
		if errors.Is(err, queue.ErrNotFound) {
			gone = append(gone, id)
			continue
		}
		if err != nil {
			continue
		}
		for _, rc := range m.Recipients {
			switch rc.State {
			case queue.StateDeferred:
				deferred--
				waiting--
			case queue.StateQueued, queue.StateActive:
				waiting--
			}
		}
		if alertOldest.IsZero() || m.Arrival.Before(alertOldest) {
			alertOldest = m.Arrival
		}
	}
	r.alerts.ForgetQueuedMail(gone)

	facts := alerts.QueueFacts{Deferred: max(deferred, 0), Messages: st.Messages, Lifetime: lifetime}
	for i, e := range r.lastErrors.newestFirst() {
		if i == 3 {
			break
		}
		facts.LastReply = append(facts.LastReply, e.Reply)
	}
	// The oldest message's age counts while mail waits for delivery (held mail alone is the admin's choice).
	// When that oldest message is alert mail, the oldest of the others is unknown: leave queue.oldest as it is.
	oldestKnown := true
	switch {
	case waiting <= 0 || st.OldestArrival.IsZero():
	case !alertOldest.IsZero() && !alertOldest.After(st.OldestArrival):
		oldestKnown = false
	default:
		facts.Oldest = now.Sub(st.OldestArrival)
	}
	if oldestKnown {
		switch {
		case facts.Oldest > a.QueueOldest.D():
			r.alerts.Raise(alerts.QueueOldest(facts, a.QueueOldest.D()))
		case facts.Oldest < a.QueueOldest.D()/2:
			r.alerts.Clear(alerts.EventQueueOldest, "")
		}
	}
	switch {
	case facts.Deferred > a.QueueDeferred:
		r.alerts.Raise(alerts.QueueDeferred(facts, a.QueueDeferred))
	case facts.Deferred <= a.QueueDeferred/2:
		r.alerts.Clear(alerts.EventQueueDeferred, "")
	}
}

// freeSpace reports the space available to ptrelay on the file system of dir, and its size.
func freeSpace(dir string) (free, total uint64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, err
	}
	return fs.Bavail * uint64(fs.Bsize), fs.Blocks * uint64(fs.Bsize), nil
}

// diskAlerts raises disk.low below alerts.disk_free and clears it above diskClearFactor times that.
func (r *Relay) diskAlerts() {
	cfg := r.cfg.Load()
	statfs := r.opts.FreeSpace
	if statfs == nil {
		statfs = freeSpace
	}
	free, total, err := statfs(cfg.DataDir)
	if err != nil || total == 0 {
		return
	}
	below := cfg.Alerts.DiskFree.Below(total)
	switch {
	case below > 0 && free < below:
		r.alerts.Raise(alerts.DiskLow(cfg.DataDir, free, total, string(cfg.Alerts.DiskFree)))
	case below == 0 || float64(free) > float64(below)*diskClearFactor:
		r.alerts.Clear(alerts.EventDiskLow, cfg.DataDir)
	}
}

// dnsAlerts asks the resolvers for a name ptrelay needs anyway (the port-25 probe's host, else our own
// name): only an answer from none of them (SERVFAIL, timeout, refused) is a failure; NXDOMAIN is an answer.
func (r *Relay) dnsAlerts(ctx context.Context) {
	cfg := r.cfg.Load()
	name := cfg.Hostname
	if host, _, err := net.SplitHostPort(cfg.Egress.Port25Probe); err == nil && host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			name = host
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 4*cfg.DNS.Timeout.D()+time.Second)
	defer cancel()
	_, err := r.resolver.LookupA(ctx, name)
	if ctx.Err() != nil && err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // shutting down
	}
	if errors.Is(err, dnscheck.ErrTemporary) {
		r.alerts.Raise(alerts.DNSFailing(r.resolver.Servers(), err.Error()))
		return
	}
	r.alerts.Clear(alerts.EventDNSFailing, "")
}

// expiryAlerts compares the dates of what ptrelay holds with the clock: the STARTTLS certificate it offers
// (as loaded at start or the last reload), and the smart hosts' OAuth client secrets (client_secret_expires).
func (r *Relay) expiryAlerts(now time.Time) {
	r.alerts.Sync(alerts.EventSecretExpiring, "", secretAlerts(r.cfg.Load(), now))
	var conds []alerts.Condition
	if cert := r.inbound.Certificate(); cert != nil && !cert.NotAfter.IsZero() {
		path := cert.File
		if cert.Auto {
			path += " (tls_cert = \"auto\": ptrelay makes a new one at the next start or reload)"
		}
		if c, ok := alerts.CertExpiring("smtp.tls_cert", path, strings.Join(cert.Names, ", "), cert.NotAfter, now); ok {
			conds = append(conds, c)
		}
	}
	r.alerts.Sync(alerts.EventCertExpiring, "", conds)
}

// digestFacts are the digest's lines about the daemon now: the egress verdicts and the queue.
func (r *Relay) digestFacts() []string {
	var out []string
	for _, es := range r.egressStatus() {
		ip := es.IP
		if ip == "" {
			ip = "(not found)"
		}
		out = append(out, fmt.Sprintf("egress %s: %s, verdict %s", es.Family, ip, es.Verdict))
	}
	if st, err := r.store.Stats(); err == nil {
		line := fmt.Sprintf("queue: %d messages, %d recipients deferred", st.Messages, st.ByState[queue.StateDeferred])
		if !st.OldestArrival.IsZero() {
			line += ", oldest from " + st.OldestArrival.UTC().Format("2006-01-02 15:04 MST")
		}
		out = append(out, line)
	}
	return out
}

// alertStatus is the admin API's view of the conditions that hold.
func (r *Relay) alertStatus() []admin.Alert { return adminAlerts(r.alerts.Alerts()) }

func adminAlerts(list []alerts.Alert) []admin.Alert {
	var out []admin.Alert
	for _, a := range list {
		out = append(out, admin.Alert{Key: a.Key, Event: string(a.Event), Subject: a.Subject, Severity: a.Severity.String(),
			State: a.State, Summary: a.Summary, Since: a.Since, FiresAt: a.FiresAt, Fix: a.Fix})
	}
	return out
}

// alertTest sends `ptrelay alerts test`'s notices.
func (r *Relay) alertTest(ctx context.Context) []admin.ChannelResult {
	return adminResults(r.alerts.Test(ctx))
}

func adminResults(res []alerts.ChannelResult) []admin.ChannelResult {
	var out []admin.ChannelResult
	for _, r := range res {
		out = append(out, admin.ChannelResult{Channel: r.Channel, Outcome: r.Outcome, Detail: r.Detail})
	}
	return out
}

// OfflineAlerts reads the conditions recorded in the queue database of a daemon that is not running: what
// held when it stopped (`ptrelay alerts list` without a daemon).
func OfflineAlerts(cfg *config.Config, st *queue.Store) ([]admin.Alert, error) {
	list, err := alerts.ReadAlerts(st, alertsSettings(cfg))
	return adminAlerts(list), err
}

// OfflineAlertTest sends the test notices of `ptrelay alerts test` from the command itself, when no daemon
// runs. st carries the alert mail when alerts.mail_via is empty; nil when no mail goes through the queue.
func OfflineAlertTest(ctx context.Context, cfg *config.Config, st *queue.Store, version string) ([]admin.ChannelResult, error) {
	ac, err := alertsConfig(cfg)
	if err != nil {
		return nil, err
	}
	return adminResults(alerts.SendTest(ctx, ac, st, version)), nil
}
