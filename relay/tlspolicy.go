package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/admin"
	"ptrelay/relay/delivery"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/route"
	"ptrelay/relay/tlspolicy"
)

// The daemon's side of outbound TLS policy: the MTA-STS cache in the queue database and its hourly upkeep, the
// DNSSEC probe that switches DANE on and off (at start and every egress.check_interval), the TLS-RPT counts
// (flushed to the queue database every minute), and what delivery's attempts mean for alerts and metrics.

const (
	// mtastsUpkeepEvery is how often the cache refreshes day-old policies and drops unused ones.
	mtastsUpkeepEvery = time.Hour
	// reportsFlushEvery is how often the TLS-RPT counts are written to the queue database.
	reportsFlushEvery = time.Minute
	// dnssecProbeName is the signed name the DNSSEC probe asks for: the root zone, signed since 2010, so the
	// probe says something about the resolver and nothing about any one domain.
	dnssecProbeName = "."
)

// tlsPolicy holds the daemon's TLS policy state.
type tlsPolicy struct {
	cache   *mtasts.Cache
	dane    tlspolicy.DANEState
	reports *tlspolicy.Reports
	engine  *tlspolicy.Engine
}

// newTLSPolicy builds the engine delivery uses. MTA-STS policies are fetched through the configured resolver
// (a custom dial, never the system's resolver) and verified against the system's roots (SSL_CERT_FILE).
func (r *Relay) newTLSPolicy() *tlsPolicy {
	tp := &tlsPolicy{reports: tlspolicy.NewReports(r.store, nil)}
	log := component(r.opts.Log, "delivery")
	fetcher := &mtasts.Fetcher{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		// delivery.bind as it is now: the policy host sees the address the MX hosts see.
		bind, _ := netip.ParseAddr(r.cfg.Load().Delivery.Bind)
		return mtasts.NewResolverDialer(r.resolver.LookupAddrs, bind)(ctx, network, addr)
	}}
	tp.cache = mtasts.NewCache(mtasts.Options{
		Store:     mtasts.QueueStore{Q: r.store},
		LookupTXT: r.resolver.LookupTXT,
		Temporary: func(err error) bool { return errors.Is(err, dnscheck.ErrTemporary) },
		Fetch:     fetcher.Fetch,
		Log:       log,
		OnFetch:   r.mtastsFetched,
	})
	tp.engine = tlspolicy.New(tlspolicy.Options{Resolver: r.resolver, MTASTS: tp.cache, DANE: &tp.dane, Log: log,
		OnSession: r.tlsSession})
	return tp
}

// mtastsFetched counts a policy fetch, and a failure as a TLS-RPT sts-policy-fetch-error (or -invalid).
func (r *Relay) mtastsFetched(domain string, err error) {
	if err == nil {
		r.metrics.MTASTSFetch("ok")
		return
	}
	result := "sts-policy-fetch-error"
	var fe *mtasts.FetchError
	if errors.As(err, &fe) {
		result = fe.Result
	}
	r.metrics.MTASTSFetch(result)
	r.tls.reports.Add(tlspolicy.Session{Domain: domain, Type: tlspolicy.TypeSTS, Result: result, Detail: err.Error()})
	component(r.opts.Log, "delivery").Warn("MTA-STS policy could not be fetched", "domain", domain, "err", err)
}

// tlsSession counts a session under a policy for TLS-RPT and the metrics.
func (r *Relay) tlsSession(s tlspolicy.Session) {
	r.tls.reports.Add(s)
	r.metrics.TLSPolicySession(s.Type, s.Result)
}

// probeDNSSEC asks whether the resolver validates, and switches DANE accordingly, saying so when it changes.
func (r *Relay) probeDNSSEC(ctx context.Context) {
	cfg := r.cfg.Load()
	if cfg.Delivery.DANE != config.DANEAuto {
		r.metrics.SetDANE(false)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 2*cfg.DNS.Timeout.D()+time.Second)
	st := r.resolver.ProbeDNSSEC(pctx, dnssecProbeName)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if r.tls.dane.Set(st, time.Now()) {
		log := component(r.opts.Log, "delivery")
		if st.Validating {
			log.Info("DANE is on: the resolver validates DNSSEC", "detail", st.Detail)
		} else {
			log.Warn("DANE is off: "+st.Detail, "fix", strings.ReplaceAll(st.Fix, "\n", " "))
		}
	}
	r.metrics.SetDANE(r.tls.dane.Active())
}

// runTLSPolicy keeps the TLS policy state current until ctx ends: the DNSSEC probe every
// egress.check_interval, the MTA-STS cache upkeep hourly (and once at start), the TLS-RPT counts flushed
// every minute and once more at the end.
func (r *Relay) runTLSPolicy(ctx context.Context) {
	defer func() {
		if err := r.tls.reports.Flush(); err != nil {
			r.log.Warn("cannot store the TLS-RPT counts", "err", err)
		}
	}()
	r.tls.cache.Maintain(ctx)
	probe := time.NewTimer(r.cfg.Load().Egress.CheckInterval.D())
	defer probe.Stop()
	upkeep := time.NewTicker(mtastsUpkeepEvery)
	defer upkeep.Stop()
	flush := time.NewTicker(reportsFlushEvery)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			r.probeDNSSEC(ctx)
			probe.Reset(r.cfg.Load().Egress.CheckInterval.D())
		case <-upkeep.C:
			r.tls.cache.Maintain(ctx)
		case <-flush.C:
			if err := r.tls.reports.Flush(); err != nil {
				r.log.Warn("cannot store the TLS-RPT counts", "err", err)
			}
		}
	}
}

// observeTLSPolicy turns a direct attempt into the tls.policy alert condition: a recipient deferred by an
// MTA-STS or DANE policy counts toward it, a delivery to the domain clears it. And it counts the attempt by
// its TLS level.
func (r *Relay) observeTLSPolicy(res delivery.Result) {
	if res.TLS != "" {
		r.metrics.DeliveryTLS(res.TLS, string(res.Outcome))
	}
	if res.Route != route.Direct {
		return
	}
	domain := route.Domain(res.Rcpt)
	switch {
	case res.Outcome == delivery.Deferred && res.Policy != "":
		r.alerts.TLSPolicyDeferred(domain, res.Policy, res.Reply())
	case res.Outcome == delivery.Sent:
		r.alerts.TLSPolicyDelivered(domain)
	}
}

// tlsPolicyStatus is the TLS policy part of `ptrelay status`.
func (r *Relay) tlsPolicyStatus() *admin.TLSPolicyStatus {
	cfg := r.cfg.Load()
	out := &admin.TLSPolicyStatus{MTASTS: cfg.Delivery.MTASTS, DANE: "disabled"}
	if cfg.Delivery.DANE == config.DANEAuto {
		st, at := r.tls.dane.Status()
		out.DANE, out.DANEDetail, out.DANEChecked = "off", st.Detail, at
		if st.Validating {
			out.DANE = "on"
		} else {
			out.DANEFix = st.Fix
		}
	}
	if all, err := (mtasts.QueueStore{Q: r.store}).All(); err == nil {
		out.Policies = len(all)
	}
	day := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	if counts, err := r.tls.reports.Since(day); err == nil {
		out.Reports = adminReports(counts)
	}
	return out
}

func adminReports(counts []tlspolicy.DayCounts) []admin.TLSReport {
	var out []admin.TLSReport
	for _, c := range counts {
		out = append(out, admin.TLSReport{Day: c.Day, Domain: c.Domain, Type: c.Type, Success: c.Success, Failures: c.Failures})
	}
	return out
}

// mtastsList and mtastsFlush serve `ptrelay mtasts show|flush` on the admin socket.
func (r *Relay) mtastsList(domain string) ([]admin.MTASTSPolicy, error) {
	list, err := r.tls.cache.List(domain)
	return adminPolicies(list), err
}

func (r *Relay) mtastsFlush(domain string) (int, error) { return r.tls.cache.Flush(domain) }

func adminPolicies(list []mtasts.Entry) []admin.MTASTSPolicy {
	var out []admin.MTASTSPolicy
	for _, e := range list {
		p := admin.MTASTSPolicy{Domain: e.Domain, ID: e.ID, Fetched: e.Fetched, Expires: e.Expires, LastUse: e.LastUse,
			RetryAfter: e.RetryAfter, RetryID: e.RetryID, LastError: e.LastError}
		if e.Policy != nil {
			p.Mode, p.MX, p.MaxAge = string(e.Policy.Mode), e.Policy.MX, int64(e.Policy.MaxAge/time.Second)
		}
		out = append(out, p)
	}
	return out
}

// OfflineMTASTS reads the cached MTA-STS policies of domain ("" : all) from a queue database when no daemon
// runs (`ptrelay mtasts show`).
func OfflineMTASTS(st *queue.Store, domain string) ([]admin.MTASTSPolicy, error) {
	all, err := (mtasts.QueueStore{Q: st}).All()
	if err != nil {
		return nil, err
	}
	var out []mtasts.Entry
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, e := range all {
		if domain == "" || e.Domain == domain {
			out = append(out, e)
		}
	}
	return adminPolicies(out), nil
}

// OfflineMTASTSFlush drops cached MTA-STS policies from a queue database when no daemon runs.
func OfflineMTASTSFlush(st *queue.Store, domain string) (int, error) {
	return mtasts.FlushStore(mtasts.QueueStore{Q: st}, domain)
}
