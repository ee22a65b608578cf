// Package config owns ptrelay's configuration: the TOML schema of docs/configuration.md, the embedded defaults, the lookup
// order of the config file, strict decoding and validation. It imports no other package of ptrelay; the packages
// that need settings receive plain values or this struct.
package config

// Config is the whole configuration file. Field order follows docs/configuration.md so that `ptrelay config check` prints
// the sections in the order the documentation describes them.
type Config struct {
	Hostname   string      `toml:"hostname"`
	DataDir    string      `toml:"data_dir"`
	SMTP       SMTP        `toml:"smtp"`
	Smarthosts []Smarthost `toml:"smarthosts"` // in order of preference; empty: no smart host
	Routing    Routing     `toml:"routing"`
	Delivery   Delivery    `toml:"delivery"`
	DKIM       DKIM        `toml:"dkim"`
	Queue      Queue       `toml:"queue"`
	DNS        DNS         `toml:"dns"`
	Egress     Egress      `toml:"egress"`
	Admin      Admin       `toml:"admin"`
	Alerts     Alerts      `toml:"alerts"`
	Web        Web         `toml:"web"`
}

// SMTP is the inbound side: who may connect, relay and authenticate, and the limits they meet.
type SMTP struct {
	Listen          []string     `toml:"listen"`
	AllowedNetworks []string     `toml:"allowed_networks"`
	MaxMessageSize  Size         `toml:"max_message_size"`
	MaxRecipients   int          `toml:"max_recipients"`
	MaxConnections  int          `toml:"max_connections"`
	TLSCert         string       `toml:"tls_cert"` // "auto": self-signed pair kept in data_dir
	TLSKey          string       `toml:"tls_key"`
	TLSNames        []string     `toml:"tls_names"` // with "auto": more DNS names and IPs for the certificate
	TLSLegacy       bool         `toml:"tls_legacy"`
	BareNewlines    BareNewlines `toml:"bare_newlines"`
	AuthRequiresTLS bool         `toml:"auth_requires_tls"`
	Users           []User       `toml:"users"`
}

// User is one AUTH PLAIN/LOGIN account; the password is only ever stored as a bcrypt hash.
type User struct {
	Name         string `toml:"name"`
	PasswordHash string `toml:"password_hash"`
}

// Routing decides, per recipient and per attempt, between direct MX delivery and the smart host.
type Routing struct {
	Mode    RoutingMode `toml:"mode"` // "" means auto with a smart host, else direct
	Reroute bool        `toml:"reroute"`
	Rules   []Rule      `toml:"rules"`
}

// Rule routes recipients in Domains, or mail from Senders (an address or a domain), via "smarthost" (the list),
// "smarthost:NAME" (one host of it) or "direct".
type Rule struct {
	Domains []string `toml:"domains"`
	Senders []string `toml:"senders"`
	Via     Via      `toml:"via"`
}

// Delivery holds the outbound SMTP client settings.
type Delivery struct {
	Port           int         `toml:"port"`
	Bind           string      `toml:"bind"`
	TLS            DeliveryTLS `toml:"tls"`
	Concurrency    int         `toml:"concurrency"`
	PerDestination int         `toml:"per_destination"`
	// SmarthostFailoverAfter host-level failures in a row mark a smart host down, for a pause that doubles from
	// SmarthostDownMin to SmarthostDownMax; then one probe delivery decides.
	SmarthostFailoverAfter int      `toml:"smarthost_failover_after"`
	SmarthostDownMin       Duration `toml:"smarthost_down_min"`
	SmarthostDownMax       Duration `toml:"smarthost_down_max"`
	// MTASTS: honour recipient domains' MTA-STS policies on direct delivery (RFC 8461).
	MTASTS bool `toml:"mta_sts"`
	// DANE: DANE (RFC 7672) on direct delivery while the resolver is trusted and validates ("auto"), or never.
	DANE DANEMode `toml:"dane"`
	// TLSPolicy are per-domain overrides of TLS on direct delivery, first match wins.
	TLSPolicy []TLSPolicyRule `toml:"tls_policy"`
}

// TLSPolicyRule sets the TLS of direct delivery to Domains to Level, in place of delivery.tls, MTA-STS and DANE
// (Postfix's smtp_tls_policy_maps).
type TLSPolicyRule struct {
	Domains []string `toml:"domains"` // "example.com" matches that domain; ".example.com" its subdomains
	Level   TLSLevel `toml:"level"`
}

// Queue holds the retry schedule.
type Queue struct {
	RetryMin     Duration `toml:"retry_min"`
	RetryMax     Duration `toml:"retry_max"`
	Lifetime     Duration `toml:"lifetime"`
	DelayWarning Duration `toml:"delay_warning"` // 0 disables
}

// DNS selects the resolvers used for MX lookups and the egress checks.
type DNS struct {
	Resolvers []string `toml:"resolvers"` // "host:port"; empty: /etc/resolv.conf
	Timeout   Duration `toml:"timeout"`
	TrustAD   TrustAD  `toml:"trust_ad"` // whose DNSSEC "authentic data" bit counts
}

// Egress configures how ptrelay finds and judges its own public address.
type Egress struct {
	IP            string   `toml:"ip"`
	Discovery     []string `toml:"discovery"` // dns | local
	Whoami        []string `toml:"whoami"`
	DNSBL         []string `toml:"dnsbl"`
	Port25Probe   string   `toml:"port25_probe"`
	CheckInterval Duration `toml:"check_interval"`
}

// Admin configures the admin socket and the metrics listener.
type Admin struct {
	Socket        string `toml:"socket"`
	SocketGroup   string `toml:"socket_group"` // "": mode 0600; a group name or gid: 0660 owned by that group
	MetricsListen string `toml:"metrics_listen"`
}
