// Package relay owns the running daemon: it opens the queue, starts the inbound SMTP listeners, the delivery
// scheduler, the egress checker, the admin socket and the metrics listener, and takes them down in order.
// It is the one place that wires ptrelay's packages together; each of them stays ignorant of the others.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/admin"
	"ptrelay/relay/alerts"
	"ptrelay/relay/delivery"
	"ptrelay/relay/dkim"
	"ptrelay/relay/inbound"
	"ptrelay/relay/metrics"
	"ptrelay/relay/sdnotify"
)

// DrainTimeout bounds how long SIGTERM waits for inbound sessions in flight before closing them.
const DrainTimeout = 30 * time.Second

// Options are the daemon's non-config inputs.
type Options struct {
	// Log is the daemon's logger. Every line names the part of the daemon it comes from in one attribute,
	// component=daemon|inbound|queue|delivery|egress|admin, set here where the parts are wired.
	Log          *slog.Logger
	Version      string
	ConfigSource string // file path or "embedded defaults", for status
	// FreeSpace replaces statfs(2) for the disk.low alert (tests); nil: the file system of data_dir.
	FreeSpace func(dir string) (free, total uint64, err error)
	// AlertCheckEvery is how often the queue, disk and DNS conditions are looked at; 0: 30 seconds.
	AlertCheckEvery time.Duration
	// AlertGroupWindow replaces the 30 s an alert waits for others to share its notice (tests); 0: 30 s.
	AlertGroupWindow time.Duration
}

// Relay is one running ptrelay daemon.
type Relay struct {
	log     *slog.Logger
	opts    Options
	cfg     atomic.Pointer[config.Config]
	started time.Time

	store     *queue.Store
	resolver  *dnscheck.Resolver
	checker   *dnscheck.Checker
	metrics   *metrics.Metrics
	inbound   *inbound.Server
	scheduler *delivery.Scheduler
	admin     *admin.Server
	listeners []net.Listener
	adminLn   net.Listener
	metricsLn net.Listener

	lastErrors lastErrors
	tlsClients tlsClients
	// started is the configuration the daemon started with: what is bound and opened. pending names the keys
	// a reload changed from it, which only a restart applies (`ptrelay status` lists them until then).
	startCfg   *config.Config
	pending    atomic.Pointer[[]string]
	alerts     *alerts.Manager
	seenDirect seenDirect
	web        webConsole // [web]: off unless web.listen is set
	tls        *tlsPolicy
	// signer holds the DKIM keys in use (nil: none), swapped whole by a reload: delivery has its own copy in
	// its Settings, alert mail through mail_via signs with this one.
	signer atomic.Pointer[dkim.Signer]
}

// New opens the queue and the listeners; nothing is served until Run. Errors say what to fix.
func New(cfg *config.Config, opts Options) (*Relay, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := &Relay{log: component(opts.Log, "daemon"), opts: opts, started: time.Now(), startCfg: cfg}
	r.cfg.Store(cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w%s", cfg.DataDir, err, dataDirHint(err, cfg.DataDir))
	}
	store, err := queue.Open(queue.Options{Dir: cfg.DataDir, Logger: component(opts.Log, "queue")})
	if err != nil {
		return nil, fmt.Errorf("opening the queue in %s: %w%s", cfg.DataDir, err, dataDirHint(err, cfg.DataDir))
	}
	r.store = store
	ok := false
	defer func() {
		if !ok {
			r.closeAll()
		}
	}()

	r.resolver, err = dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: cfg.DNS.Resolvers, Timeout: cfg.DNS.Timeout.D(),
		TrustAD: dnscheck.TrustAD(cfg.DNS.TrustAD)})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	r.checker, err = dnscheck.NewChecker(r.checkerOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	r.metrics = metrics.New()
	r.tls = r.newTLSPolicy()
	r.metrics.SetQueueStats(r.queueStats)
	signer, err := dkim.Load(cfg)
	if err != nil {
		return nil, err
	}
	r.signer.Store(signer)
	ac, err := r.alertsConfig(cfg)
	if err != nil {
		return nil, err
	}
	r.alerts, err = alerts.New(ac, alerts.Options{Store: store, Log: r.log, Metrics: r.metrics, Facts: r.digestFacts,
		Version: opts.Version, Sign: r.signOwn})
	if err != nil {
		return nil, fmt.Errorf("alerts: reading their state from the queue database: %w", err)
	}

	r.inbound, err = inbound.New(cfg, store, component(opts.Log, "inbound"), inbound.Hooks{
		OnSession:  r.metrics.SessionDelta,
		OnAccepted: func(id string, size int64) { r.metrics.Accepted(size) },
		OnRefused:  r.metrics.Refused,
		OnTLS:      r.tlsClients.add,
		OnAuth:     r.authObserved,
	})
	if err != nil {
		return nil, err
	}
	r.scheduler = delivery.New(deliverySettings(cfg, signer), delivery.Env{
		Store:    store,
		Resolver: r.resolver,
		Verdict:  r.checker,
		Log:      component(opts.Log, "delivery"),
		Observers: delivery.Observers{OnAttempt: r.observeAttempt, OnReroute: r.metrics.Reroute,
			OnSmarthostDown: r.alerts.SmarthostDown, OnSmarthostUp: r.alerts.SmarthostUp,
			OnLoginRefused: r.alerts.SmarthostLoginRefused, OnLoginOK: r.alerts.SmarthostLoginOK,
			OnDKIM: r.metrics.DKIM},
		TLSPolicy: r.tls.engine,
	})
	r.metrics.SetSmarthosts(r.smarthostGauges)
	r.admin = admin.NewServer(store, r.status, r.scheduler.Retry, component(opts.Log, "admin"))
	r.admin.SetAlerts(r.alertStatus, r.alertTest)
	r.admin.SetMTASTS(r.mtastsList, r.mtastsFlush)

	for _, addr := range cfg.SMTP.Listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("smtp.listen %s: %w: %s", addr, err, listenHint(err, addr))
		}
		r.listeners = append(r.listeners, l)
	}
	// Bind the admin socket and the metrics port now, so that a clash (a second daemon on the same socket)
	// stops the start instead of showing up as a log line after READY=1.
	r.adminLn, err = r.admin.Listen(cfg.AdminSocket(), cfg.Admin.SocketGroup)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	if cfg.Admin.MetricsListen != "" {
		r.metricsLn, err = net.Listen("tcp", cfg.Admin.MetricsListen)
		if err != nil {
			return nil, fmt.Errorf("admin.metrics_listen %s: %w: %s", cfg.Admin.MetricsListen, err, listenHint(err, cfg.Admin.MetricsListen))
		}
	}
	if err := r.openWeb(cfg); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// component is log with the attribute that names the part of the daemon a line comes from.
func component(log *slog.Logger, name string) *slog.Logger { return log.With("component", name) }

// Run serves until ctx is cancelled, then drains: it stops accepting, lets inbound sessions finish within
// DrainTimeout, returns deliveries in flight to the queue, and closes the queue. It returns nil on a clean stop.
func (r *Relay) Run(ctx context.Context) error {
	cfg := r.cfg.Load()
	var wg sync.WaitGroup
	serveErr := make(chan error, len(r.listeners)+2)
	for _, l := range r.listeners {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			if err := r.inbound.Serve(l); err != nil {
				serveErr <- fmt.Errorf("smtp listener %s: %w", l.Addr(), err)
			}
		}(l)
		r.log.Info("listening", "addr", l.Addr().String())
	}

	schedCtx, stopSched := context.WithCancel(context.Background())
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		// The first verdict is computed at start-up, before delivery begins (docs/architecture.md, Start-up);
		// so is whether DANE can be used.
		r.startChecker(schedCtx)
		r.probeDNSSEC(schedCtx)
		if err := r.scheduler.Run(schedCtx); err != nil && !errors.Is(err, context.Canceled) {
			serveErr <- fmt.Errorf("delivery: %w", err)
		}
	}()

	// Alerts run until the very end (a problem while draining is worth telling) and stop before the store.
	alertCtx, stopAlerts := context.WithCancel(context.Background())
	var alertWG sync.WaitGroup
	alertWG.Add(2)
	go func() { defer alertWG.Done(); r.alerts.Run(alertCtx) }()
	go func() { defer alertWG.Done(); r.watchAlerts(alertCtx) }()

	// The TLS policy upkeep (MTA-STS cache, DNSSEC probe, TLS-RPT counts) writes the store: it stops before it.
	tlsCtx, stopTLS := context.WithCancel(context.Background())
	tlsDone := make(chan struct{})
	go func() { defer close(tlsDone); r.runTLSPolicy(tlsCtx) }()

	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	var adminWG sync.WaitGroup
	adminWG.Add(1)
	go func() {
		defer adminWG.Done()
		if err := r.admin.ServeListener(adminCtx, r.adminLn); err != nil && adminCtx.Err() == nil {
			r.log.Error("admin socket failed; queue commands cannot reach the daemon", "socket", cfg.AdminSocket(), "err", err)
		}
	}()
	if r.metricsLn != nil {
		adminWG.Add(1)
		go func() {
			defer adminWG.Done()
			if err := r.metrics.ServeListener(adminCtx, r.metricsLn); err != nil && adminCtx.Err() == nil {
				r.log.Error("metrics listener failed", "addr", cfg.Admin.MetricsListen, "err", err)
			}
		}()
	}
	adminWG.Add(1)
	go func() { defer adminWG.Done(); r.serveWeb(adminCtx) }()
	go sdnotify.Watchdog(adminCtx)
	_ = sdnotify.Ready()
	_ = sdnotify.Status(r.statusLine())
	r.log.Info("ptrelay started", "version", r.opts.Version, "hostname", cfg.Hostname, "data_dir", cfg.DataDir)
	logDKIM(r.log, r.signer.Load())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	_ = sdnotify.Stopping()
	r.log.Info("stopping: no new sessions; waiting for sessions in flight", "bound", DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	if err := r.inbound.Shutdown(drainCtx); err != nil {
		r.log.Warn("sessions still open at the drain bound were closed; their clients keep the mail and retry", "err", err)
	}
	cancel()
	wg.Wait()
	stopSched()
	<-schedDone
	// The admin API reads the store: let its requests in flight finish before the store closes.
	stopAdmin()
	adminWG.Wait()
	stopAlerts()
	alertWG.Wait()
	stopTLS()
	<-tlsDone
	if err := r.store.Close(); err != nil {
		r.log.Error("closing the queue", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	r.log.Info("stopped")
	return runErr
}

// Reload applies a new, already validated configuration to the parts that can change while running: inbound
// access, users, limits and TLS, and routing and delivery settings. Listen addresses and data_dir need a restart.
func (r *Relay) Reload(cfg *config.Config) error {
	_ = sdnotify.Reloading()
	defer func() { _ = sdnotify.Ready() }()
	ac, err := r.alertsConfig(cfg)
	if err != nil {
		return err
	}
	// Keys first: a key that cannot be read refuses the whole reload, before anything has changed.
	signer, err := dkim.Load(cfg)
	if err != nil {
		return err
	}
	applyWeb, err := r.reloadWeb(cfg)
	if err != nil {
		return err
	}
	if err := r.inbound.Reload(cfg); err != nil {
		return err
	}
	if err := r.checker.Update(r.checkerOptions(cfg)); err != nil {
		return err
	}
	r.signer.Store(signer)
	r.scheduler.Reload(deliverySettings(cfg, signer))
	logDKIM(r.log, signer)
	r.cfg.Store(cfg)
	r.alerts.Reload(ac)
	r.clearRemovedSmarthosts(cfg)
	applyWeb()
	r.expiryAlerts(time.Now()) // the certificate may have been replaced
	// Against the start, not the previous reload: a change stays pending over later reloads until a restart,
	// and one reverted by a reload is pending no more.
	keys := restartKeys(r.startCfg, cfg)
	r.pending.Store(&keys)
	if len(keys) > 0 {
		r.log.Warn("some changes take effect only at the next restart (systemctl restart ptrelay); ptrelay status lists them",
			"keys", strings.Join(keys, ", "))
	}
	return nil
}

// pendingRestart names the changed keys that wait for a restart.
func (r *Relay) pendingRestart() []string {
	if p := r.pending.Load(); p != nil {
		return *p
	}
	return nil
}

// restartKeys names the changed settings a reload cannot apply: what was bound or opened at start (listeners,
// the queue, the admin socket, the metrics port) and the resolver shared by delivery and the egress checker.
func restartKeys(old, cfg *config.Config) []string {
	var keys []string
	changed := func(key string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			keys = append(keys, key)
		}
	}
	changed("smtp.listen", old.SMTP.Listen, cfg.SMTP.Listen)
	changed("data_dir", old.DataDir, cfg.DataDir)
	changed("admin.socket", old.AdminSocket(), cfg.AdminSocket())
	changed("admin.socket_group", old.Admin.SocketGroup, cfg.Admin.SocketGroup)
	changed("admin.metrics_listen", old.Admin.MetricsListen, cfg.Admin.MetricsListen)
	changed("dns.resolvers", old.DNS.Resolvers, cfg.DNS.Resolvers)
	changed("dns.timeout", old.DNS.Timeout, cfg.DNS.Timeout)
	changed("web.listen", old.Web.Listen, cfg.Web.Listen)
	changed("web.tls_cert", old.Web.TLSCert, cfg.Web.TLSCert)
	changed("web.tls_key", old.Web.TLSKey, cfg.Web.TLSKey)
	changed("dns.trust_ad", old.DNS.TrustAD, cfg.DNS.TrustAD)
	return keys
}

// ReloadFailed tells systemd the reload is over although nothing changed.
func (r *Relay) ReloadFailed(error) {
	_ = sdnotify.Reloading()
	_ = sdnotify.Ready()
}

func (r *Relay) closeAll() {
	for _, l := range r.listeners {
		_ = l.Close()
	}
	for _, l := range []net.Listener{r.adminLn, r.metricsLn, r.web.ln} {
		if l != nil {
			_ = l.Close()
		}
	}
	if r.store != nil {
		_ = r.store.Close()
	}
}

func (r *Relay) queueStats() (map[string]int, time.Time) {
	st, err := r.store.Stats()
	if err != nil {
		return nil, time.Time{}
	}
	by := make(map[string]int, len(st.ByState))
	for s, n := range st.ByState {
		by[string(s)] = n
	}
	return by, st.OldestArrival
}

func (r *Relay) statusLine() string {
	st, err := r.store.Stats()
	if err != nil {
		return "running"
	}
	return fmt.Sprintf("running; %d message(s) queued", st.Messages)
}
