package delivery

import (
	"net/netip"
	"strconv"
	"time"

	"ptrelay/config"
	"ptrelay/relay/dkim"
	"ptrelay/relay/route"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/tlspolicy"
)

// Settings is the part of the configuration delivery works with, read once from a validated configuration by
// NewSettings: choices are typed values here, never strings compared again. A reload builds new Settings and
// Scheduler.Reload swaps them whole; the next pick-up and every session opened after it use them, and a session
// in flight finishes its transaction with the ones it started with.
type Settings struct {
	Hostname string // the EHLO name, and the Reporting-MTA of DSNs
	Routing  *route.Policy
	Direct   DirectSettings
	// Smarthosts are the smart hosts in order of preference ([[smarthosts]]); empty: none configured. Each
	// attempt chooses one (smarthost_choose.go); the hop walk then takes its addresses as candidates, as it
	// takes the MX hosts of a domain.
	Smarthosts []Smarthost
	Failover   FailoverSettings

	Concurrency    int // delivery.concurrency, at least 1
	PerDestination int // delivery.per_destination, from 1 to Concurrency

	RetryMin, RetryMax time.Duration // the backoff (Backoff)
	Lifetime           time.Duration // queue.lifetime; 0: mail never expires
	DelayWarning       time.Duration // queue.delay_warning; 0: no delay DSN

	// DKIM signs each attempt's message (outgoing.go); nil: no [dkim] keys. The daemon loads the keys
	// (dkim.Load) and sets it: reading key files can fail, which NewSettings cannot.
	DKIM *dkim.Signer
}

// DirectSettings is how mail goes to the recipient domain's MX hosts.
type DirectSettings struct {
	Port string             // delivery.port
	Bind netip.Addr         // delivery.bind, the source of every outbound connection; invalid: the kernel's choice
	TLS  smtpclient.TLSMode // delivery.tls
	// Policy is delivery.tls with MTA-STS, DANE and [[delivery.tls_policy]] (relay/tlspolicy).
	Policy tlspolicy.Settings
}

// NewSettings reads delivery's keys from a validated configuration.
func NewSettings(cfg *config.Config) *Settings {
	st := &Settings{
		Hostname:     cfg.Hostname,
		Routing:      route.NewPolicy(cfg),
		RetryMin:     cfg.Queue.RetryMin.D(),
		RetryMax:     cfg.Queue.RetryMax.D(),
		Lifetime:     cfg.Queue.Lifetime.D(),
		DelayWarning: cfg.Queue.DelayWarning.D(),
	}
	if st.Hostname == "" {
		st.Hostname = "localhost" // config fills hostname from the OS; this only guards a hand-built Config
	}
	st.Concurrency, st.PerDestination = cfg.Delivery.Concurrency, cfg.Delivery.PerDestination
	if st.Concurrency <= 0 {
		st.Concurrency = 1
	}
	if st.PerDestination <= 0 || st.PerDestination > st.Concurrency {
		st.PerDestination = st.Concurrency
	}
	st.Direct.Port = "25"
	if cfg.Delivery.Port > 0 {
		st.Direct.Port = strconv.Itoa(cfg.Delivery.Port)
	}
	if cfg.Delivery.Bind != "" {
		st.Direct.Bind, _ = netip.ParseAddr(cfg.Delivery.Bind)
	}
	switch cfg.Delivery.TLS {
	case config.DeliveryNoTLS:
		st.Direct.TLS = smtpclient.TLSOff
	case config.DeliveryVerify:
		st.Direct.TLS = smtpclient.TLSRequired
	default:
		st.Direct.TLS = smtpclient.TLSOpportunistic
	}
	st.Direct.Policy = tlspolicy.NewSettings(cfg)
	st.Failover = FailoverSettings{After: max(cfg.Delivery.SmarthostFailoverAfter, 1),
		DownMin: cfg.Delivery.SmarthostDownMin.D(), DownMax: cfg.Delivery.SmarthostDownMax.D()}
	if st.Failover.DownMin <= 0 {
		st.Failover.DownMin = time.Minute
	}
	st.Failover.DownMax = max(st.Failover.DownMax, st.Failover.DownMin)
	for i := range cfg.Smarthosts {
		st.Smarthosts = append(st.Smarthosts, newSmarthost(&cfg.Smarthosts[i]))
	}
	return st
}
