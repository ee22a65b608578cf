package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks the whole configuration and reports every problem at once (errors.Join of *FieldError), each
// naming its key and saying in one sentence how to fix it. It reads the file system for the files the
// configuration names (TLS pairs, service account keys) and $CREDENTIALS_DIRECTORY, nothing else.
func (c *Config) Validate() error {
	return joinProblems(c.problems())
}

type checker struct{ list []*FieldError }

func (k *checker) add(key, format string, args ...any) {
	k.list = append(k.list, &FieldError{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)})
}

func (c *Config) problems() []*FieldError {
	k := &checker{}
	c.checkTop(k)
	c.checkSMTP(k)
	c.checkSmarthosts(k)
	c.checkRouting(k)
	c.checkDelivery(k)
	c.checkDKIM(k)
	c.checkQueue(k)
	c.checkDNS(k)
	c.checkEgress(k)
	c.checkAdmin(k)
	c.checkAlerts(k)
	c.checkWeb(k)
	return k.list
}

func (c *Config) checkTop(k *checker) {
	if c.Hostname == "" || !validHostname(c.Hostname) {
		k.add("hostname", "%q is not a host name: write this server's public name, e.g. \"relay.example.com\", "+
			"the name its IP address's PTR record points to", c.Hostname)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		k.add("data_dir", "is empty: write a directory ptrelay may write to, e.g. \"/var/lib/ptrelay\"")
	}
}

func (c *Config) checkSMTP(k *checker) {
	s := &c.SMTP
	if len(s.Listen) == 0 {
		k.add("smtp.listen", "is empty: list at least one address to accept mail on, e.g. [\"0.0.0.0:25\"]")
	}
	for i, a := range s.Listen {
		if why := checkHostPort(a, true); why != "" {
			k.add(idx("smtp.listen", i), "%q %s: write host:port, e.g. \"0.0.0.0:25\", \"[::]:587\" or \":25\"", a, why)
		}
	}
	for i, n := range s.AllowedNetworks {
		if !validNetwork(n) {
			k.add(idx("smtp.allowed_networks", i), "%q is neither a network nor an IP address: "+
				"write a CIDR such as \"192.168.1.0/24\" or an address such as \"192.168.1.10\"", n)
		} else if p, err := netip.ParsePrefix(n); err == nil && p.Bits() == 0 {
			// Postfix would accept it; nobody means it: every spammer on the Internet could relay through us.
			k.add(idx("smtp.allowed_networks", i), "%q is the whole Internet and would make ptrelay an open relay: "+
				"list your LAN (e.g. \"192.168.1.0/24\") and let other senders log in with [[smtp.users]]", n)
		}
	}
	if s.MaxMessageSize <= 0 {
		k.add("smtp.max_message_size", "must be positive: write a size such as \"35MB\"")
	}
	if s.MaxRecipients <= 0 {
		k.add("smtp.max_recipients", "must be positive: write a number such as 500")
	}
	if s.MaxConnections <= 0 {
		k.add("smtp.max_connections", "must be positive: write a number such as 200")
	}
	switch {
	case s.TLSCert == "auto":
		if s.TLSKey != "" {
			k.add("smtp.tls_key", "must be empty when tls_cert is \"auto\" (ptrelay makes and keeps its own key): "+
				"remove tls_key, or set tls_cert to your certificate file")
		}
	case s.TLSCert != "" && s.TLSKey == "":
		k.add("smtp.tls_cert", "is set but smtp.tls_key is empty: set tls_key to the certificate's private key file, "+
			"or remove tls_cert")
	case s.TLSCert == "" && s.TLSKey != "":
		k.add("smtp.tls_key", "is set but smtp.tls_cert is empty: set tls_cert to the certificate file "+
			"(full chain, PEM), or remove tls_key")
	}
	if s.TLSCert != "auto" {
		checkFile(k, "smtp.tls_cert", s.TLSCert, "the certificate")
	}
	checkFile(k, "smtp.tls_key", s.TLSKey, "the private key")
	for i, n := range s.TLSNames {
		if !validCertName(n) {
			k.add(idx("smtp.tls_names", i), "%q is neither a DNS name nor an IP address: write the name or address "+
				"your servers use to reach ptrelay, e.g. \"relay.example.lan\" or \"192.168.1.20\"", n)
		}
	}
	if len(s.TLSNames) > 0 && s.TLSCert != "auto" {
		// A setting that silently does nothing would let an admin believe the certificate carries the name.
		k.add("smtp.tls_names", "is used only with tls_cert = \"auto\": the names of your own certificate come from "+
			"the certificate file; remove tls_names, or set tls_cert = \"auto\"")
	}
	if !s.BareNewlines.Valid() {
		k.add("smtp.bare_newlines", "%q is not a choice: write \"reject\" (the safe default) or \"normalize\"", s.BareNewlines)
	}
	seen := map[string]int{}
	for i, u := range s.Users {
		key := idx("smtp.users", i)
		if strings.TrimSpace(u.Name) == "" {
			k.add(key+".name", "is empty: give every [[smtp.users]] the name it logs in with")
		} else if first, dup := seen[u.Name]; dup {
			k.add(key+".name", "%q is already the name of smtp.users[%d]: give each user its own name, "+
				"or remove one of them", u.Name, first)
		} else {
			seen[u.Name] = i + 1
		}
		if u.PasswordHash == "" {
			k.add(key+".password_hash", "is missing: run `ptrelay hash-password`, type the user's password, and "+
				"write the line it prints as password_hash = \"...\"")
		} else if !bcryptHash.MatchString(u.PasswordHash) {
			k.add(key+".password_hash", "is not a bcrypt hash: run `ptrelay hash-password`, type the password, "+
				"and paste the line it prints (starting with $2a$)")
		}
	}
}

// bcryptHash matches the modular crypt form of bcrypt: version, cost 04..31, 22 characters of salt and 31 of hash.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$`)

func (c *Config) checkRouting(k *checker) {
	r := &c.Routing
	switch {
	case !r.Mode.Valid():
		k.add("routing.mode", "%q is not a choice: write \"auto\", \"direct\" or \"smarthost\"", r.Mode)
	case r.Mode == RoutingSmarthost && !c.HasSmarthosts():
		k.add("routing.mode", "is \"smarthost\" but no smart host is configured: add a [[smarthosts]] entry, "+
			"or use mode \"direct\"")
	}
	for i, rule := range r.Rules {
		key := idx("routing.rules", i)
		if len(rule.Domains) == 0 && len(rule.Senders) == 0 {
			k.add(key, "matches nothing: give it domains = [...] (recipient domains) or senders = [...]")
		}
		for j, d := range rule.Domains {
			if !validDomain(d) {
				k.add(idx(key+".domains", j), "%q is not a domain: write a recipient domain such as \"hotmail.com\"", d)
			}
		}
		for j, s := range rule.Senders {
			if !validSender(s) {
				k.add(idx(key+".senders", j), "%q is neither an address nor a domain: write e.g. "+
					"\"scanner@example.com\" or \"example.com\"", s)
			}
		}
		name, pinned := rule.Via.SmarthostName()
		switch {
		case !rule.Via.Valid():
			k.add(key+".via", "%q is not a choice: write \"smarthost\", \"smarthost:NAME\" (one host of "+
				"[[smarthosts]]) or \"direct\"", rule.Via)
		case rule.Via.Smarthost() && !c.HasSmarthosts():
			k.add(key+".via", "is %q but no smart host is configured: add a [[smarthosts]] entry, or remove the rule",
				rule.Via)
		case pinned && c.SmarthostNamed(name) == nil:
			k.add(key+".via", "names smart host %q, which is not in [[smarthosts]]: write one of %s", name,
				c.smarthostNames())
		}
	}
}

func (c *Config) checkDelivery(k *checker) {
	d := &c.Delivery
	if d.Port < 1 || d.Port > 65535 {
		k.add("delivery.port", "%d is not a port: write 25, the SMTP port of every mail exchanger", d.Port)
	}
	if d.Bind != "" {
		if _, err := netip.ParseAddr(d.Bind); err != nil {
			k.add("delivery.bind", "%q is not an IP address: write one of this machine's addresses, or leave it "+
				"empty to let the system choose", d.Bind)
		}
	}
	if !d.TLS.Valid() {
		k.add("delivery.tls", "%q is not a choice: write \"opportunistic\" (the default), \"verify\" or \"none\"", d.TLS)
	}
	if d.Concurrency < 1 {
		k.add("delivery.concurrency", "must be at least 1: write a number such as 100")
	}
	if !d.DANE.Valid() {
		k.add("delivery.dane", "%q is not a choice: write \"auto\" (the default: DANE while the resolver validates) or \"off\"", d.DANE)
	}
	for i, rule := range d.TLSPolicy {
		key := idx("delivery.tls_policy", i)
		if len(rule.Domains) == 0 {
			k.add(key+".domains", "is empty: list the recipient domains this level applies to, e.g. [\"partner.example\"]")
		}
		for j, dom := range rule.Domains {
			if !validDomain(strings.TrimPrefix(dom, ".")) {
				k.add(idx(key+".domains", j), "%q is not a domain: write a recipient domain such as \"partner.example\", "+
					"or \".partner.example\" for its subdomains", dom)
			}
		}
		if !rule.Level.Valid() {
			k.add(key+".level", "%q is not a choice: write \"none\", \"may\", \"encrypt\", \"verify\" or \"dane-only\" "+
				"(Postfix's words)", rule.Level)
		}
	}
	if d.PerDestination < 1 {
		k.add("delivery.per_destination", "must be at least 1: write a number such as 20")
	} else if d.Concurrency >= 1 && d.PerDestination > d.Concurrency {
		k.add("delivery.per_destination", "%d is larger than delivery.concurrency (%d): lower it, or raise "+
			"concurrency", d.PerDestination, d.Concurrency)
	}
	if d.SmarthostFailoverAfter < 1 {
		k.add("delivery.smarthost_failover_after", "must be at least 1: write a number such as 3")
	}
	if d.SmarthostDownMin <= 0 {
		k.add("delivery.smarthost_down_min", "must be positive: write a duration such as \"1m\"")
	}
	if d.SmarthostDownMax < d.SmarthostDownMin {
		k.add("delivery.smarthost_down_max", "%s is shorter than delivery.smarthost_down_min (%s): raise it, e.g. "+
			"\"30m\"", d.SmarthostDownMax, d.SmarthostDownMin)
	}
}

// smarthostNames lists the configured names for a fix sentence: "\"isp\", \"m365\"".
func (c *Config) smarthostNames() string {
	var q []string
	for _, s := range c.Smarthosts {
		q = append(q, strconv.Quote(s.Name))
	}
	if len(q) == 0 {
		return "the name of a [[smarthosts]] entry"
	}
	return strings.Join(q, ", ")
}

func (c *Config) checkQueue(k *checker) {
	q := &c.Queue
	if q.RetryMin <= 0 {
		k.add("queue.retry_min", "must be positive: write a duration such as \"5m\"")
	}
	if q.RetryMax < q.RetryMin {
		// Suggest a value that fixes it: retry_max is the cap of a backoff that starts at retry_min.
		k.add("queue.retry_max", "%s is shorter than queue.retry_min (%s): raise retry_max to at least %s, or lower "+
			"retry_min (the defaults are \"5m\" and \"1h\")", q.RetryMax, q.RetryMin, q.RetryMin)
	}
	if q.Lifetime <= q.RetryMin {
		k.add("queue.lifetime", "%s is not longer than queue.retry_min (%s), so no retry would ever happen: "+
			"write e.g. \"5d\"", q.Lifetime, q.RetryMin)
	}
	if q.DelayWarning < 0 {
		k.add("queue.delay_warning", "must not be negative: write e.g. \"4h\", or \"0\" to send no delay warning")
	}
}

func (c *Config) checkDNS(k *checker) {
	for i, r := range c.DNS.Resolvers {
		if _, err := netip.ParseAddr(r); err == nil {
			continue // a bare IP means port 53
		}
		if ap, err := netip.ParseAddrPort(r); err != nil || ap.Port() == 0 {
			k.add(idx("dns.resolvers", i), "%q is not IP:port: write a resolver's address such as \"127.0.0.1:53\" "+
				"or \"[::1]:53\" (a bare IP means port 53; a name cannot be used to find the resolver itself)", r)
		}
	}
	if c.DNS.Timeout <= 0 {
		k.add("dns.timeout", "must be positive: write a duration such as \"5s\"")
	}
	if !c.DNS.TrustAD.Valid() {
		k.add("dns.trust_ad", "%q is not a choice: write \"loopback\" (the default), \"always\" or \"never\"", c.DNS.TrustAD)
	}
}

func (c *Config) checkEgress(k *checker) {
	e := &c.Egress
	if e.IP != "" && !validStaticEgress(e.IP) {
		k.add("egress.ip", "%q is not an IP address: write the public address your mail leaves from (or one IPv4 and "+
			"one IPv6 address separated by a comma), or leave it empty to discover it", e.IP)
	}
	for i, m := range e.Discovery {
		if m != "dns" && m != "local" {
			k.add(idx("egress.discovery", i), "%q is not a method: write \"dns\" (ask a whoami server) or \"local\" "+
				"(the kernel's source address)", m)
		}
	}
	if e.IP == "" && len(e.Discovery) == 0 {
		k.add("egress.discovery", "is empty and egress.ip is not set, so the egress address cannot be known: "+
			"write [\"dns\", \"local\"], or set egress.ip")
	}
	if slices.Contains(e.Discovery, "dns") && len(e.Whoami) == 0 {
		k.add("egress.whoami", "is empty but egress.discovery uses \"dns\": write [\"resolver1.opendns.com:53\"], "+
			"or remove \"dns\" from discovery")
	}
	for i, w := range e.Whoami {
		if why := checkHostPort(w, false); why != "" {
			k.add(idx("egress.whoami", i), "%q %s: write host:port, e.g. \"resolver1.opendns.com:53\"", w, why)
		}
	}
	for i, z := range e.DNSBL {
		if !validDomain(z) {
			k.add(idx("egress.dnsbl", i), "%q is not a DNS zone: write a blocklist zone such as \"zen.spamhaus.org\"", z)
		}
	}
	if e.Port25Probe != "" {
		if why := checkHostPort(e.Port25Probe, false); why != "" {
			k.add("egress.port25_probe", "%q %s: write host:port, e.g. \"gmail-smtp-in.l.google.com:25\", or \"\" "+
				"to skip the probe", e.Port25Probe, why)
		}
	}
	if e.CheckInterval <= 0 {
		k.add("egress.check_interval", "must be positive: write a duration such as \"10m\"")
	}
}

func (c *Config) checkAdmin(k *checker) {
	if g := c.Admin.SocketGroup; g != "" {
		if _, err := user.LookupGroup(g); err != nil {
			if _, err := user.LookupGroupId(g); err != nil {
				k.add("admin.socket_group", "%q is not a group on this machine: create it (groupadd %s) or write an "+
					"existing group's name", g, g)
			}
		}
	}
	if c.Admin.MetricsListen != "" {
		if why := checkHostPort(c.Admin.MetricsListen, true); why != "" {
			k.add("admin.metrics_listen", "%q %s: write host:port, e.g. \"127.0.0.1:9465\", or \"\" for no metrics",
				c.Admin.MetricsListen, why)
		}
	}
}

// idx names the i-th element of a list, counting from 1 as an admin reading the file does.
func idx(key string, i int) string { return key + "[" + strconv.Itoa(i+1) + "]" }

// checkHostPort returns why s is not a usable host:port, or "". An empty host (":25") means every address and
// port 0 a free port chosen by the system (what tests use); both only make sense for a listener.
func checkHostPort(s string, listener bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not host:port"
	}
	if host == "" && !listener {
		return "has no host"
	}
	if host != "" && !validHostname(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return "has an invalid host"
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || n == 0 && !listener {
		return "has no valid port (1-65535)"
	}
	return ""
}

func validNetwork(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// validHostname accepts a DNS name of letters, digits, hyphens and underscores (the latter occur in internal
// names), with labels of 1..63 characters.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func validDomain(s string) bool { return validHostname(s) }

// validCertName accepts what a certificate's subject alternative names can hold and a client can verify: a DNS
// name (no wildcard: Exchange checks the exact name of its smart host) or an IP address without a zone.
func validCertName(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	return validHostname(s) && !strings.HasSuffix(s, ".")
}

// validSender accepts an address ("scanner@example.com") or a domain ("example.com", also "@example.com"), the
// forms relay/route matches.
func validSender(s string) bool {
	s = strings.TrimPrefix(s, "@")
	local, dom, isAddr := strings.Cut(s, "@")
	if !isAddr {
		return validDomain(s)
	}
	return local != "" && !strings.ContainsAny(local, " \t<>@") && validDomain(dom)
}

// onLAN reports whether host is loopback or a private (RFC 1918 / ULA) address, where plaintext credentials do
// not leave the organisation. A host name other than localhost cannot be judged without resolving it, so it is not
// trusted: the admin can write the private IP instead.
func onLAN(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate()
}

// unwrapPath drops the "open PATH:" prefix of an *os.PathError; the key's message already says which file.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// checkFile reports a configured file that does not exist or is not a regular file.
func checkFile(k *checker, key, path, what string) {
	if path == "" || fromCredentials(path) && os.Getenv("CREDENTIALS_DIRECTORY") == "" {
		return // a systemd credential, there only while the service runs: CheckSecrets says so
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		k.add(key, "%s %q cannot be read (%v): check the path", what, path, unwrapPath(err))
	case !st.Mode().IsRegular():
		k.add(key, "%q is not a file: write the path of %s (PEM)", path, what)
	}
}

// validStaticEgress accepts one address, or one IPv4 and one IPv6 address separated by a comma or space: the
// egress address is judged per family, as receivers judge it.
func validStaticEgress(s string) bool {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 || len(fields) > 2 {
		return false
	}
	seen := map[bool]bool{}
	for _, f := range fields {
		a, err := netip.ParseAddr(f)
		if err != nil || seen[a.Unmap().Is4()] {
			return false
		}
		seen[a.Unmap().Is4()] = true
	}
	return true
}
