package config

import (
	"net"
	"net/url"
	"regexp"
	"strings"
)

// validName is what a smart host may be called: it appears in routing rules (smarthost:NAME), log lines
// (relay=NAME/host[ip]:port), metric labels and the names of systemd credentials.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (c *Config) checkSmarthosts(k *checker) {
	seen := map[string]int{}
	for i := range c.Smarthosts {
		s := &c.Smarthosts[i]
		key := idx("smarthosts", i)
		switch {
		case s.Name == "":
			k.add(key+".name", "is empty: give every [[smarthosts]] entry a short name, e.g. name = \"isp\" (it "+
				"names the host in routing rules, logs and `ptrelay status`)")
		case !validName.MatchString(s.Name):
			k.add(key+".name", "%q is not a usable name: use letters, digits, '.', '-' and '_', e.g. \"m365\"", s.Name)
		default:
			if first, dup := seen[s.Name]; dup {
				k.add(key+".name", "%q is already the name of smarthosts[%d]: give each smart host its own name",
					s.Name, first)
			} else {
				seen[s.Name] = i + 1
			}
		}
		c.checkSmarthost(k, key, s)
	}
}

func (c *Config) checkSmarthost(k *checker, key string, s *Smarthost) {
	if s.Address == "" {
		k.add(key+".address", "is empty: write the smart host's host:port, e.g. \"smtp.isp.example:587\"")
	} else if why := checkHostPort(s.Address, false); why != "" {
		k.add(key+".address", "%q %s: write host:port, e.g. \"smtp.isp.example:587\"", s.Address, why)
	}
	if !s.TLS.Valid() {
		k.add(key+".tls", "%q is not a choice: write \"starttls\" (port 587), \"implicit\" (port 465) or "+
			"\"none\" (only for a server on this machine or your LAN)", s.TLS)
	} else if s.TLS == SmarthostNoTLS && s.LogsIn() && checkHostPort(s.Address, false) == "" && !onLAN(s.Host()) {
		k.add(key+".tls", "is \"none\" with a username for %s, which is not a loopback or private address: the "+
			"credentials would cross the network in plaintext; use tls = \"starttls\" or \"implicit\", or write the "+
			"smart host's private IP address", s.Host())
	}
	c.checkSmarthostAuth(k, key, s)
	switch {
	case (s.TLSClientCert == "") != (s.TLSClientKey == ""):
		k.add(key+".tls_client_cert", "and tls_client_key go together: set both (the certificate and its private "+
			"key, PEM), or neither")
	case s.TLSClientCert != "" && s.TLS == SmarthostNoTLS:
		k.add(key+".tls_client_cert", "needs TLS: a client certificate is presented in the TLS handshake, so set "+
			"tls = \"starttls\" or \"implicit\"")
	}
	checkFile(k, key+".tls_client_cert", s.TLSClientCert, "the client certificate")
	checkFile(k, key+".tls_client_key", s.TLSClientKey, "the client certificate's key")
	if s.MaxConnections < 1 {
		k.add(key+".max_connections", "must be at least 1: write a number such as 5 (Microsoft 365 allows 3 per mailbox)")
	}
	if s.MaxRecipients < 1 {
		k.add(key+".max_recipients", "must be at least 1: write a number such as 100")
	}
	for j, r := range s.MessageRate {
		if _, err := ParseRate(r); err != nil {
			k.add(idx(key+".message_rate", j), "%s", err.Error())
		}
	}
	for j, r := range s.RecipientRate {
		if _, err := ParseRate(r); err != nil {
			k.add(idx(key+".recipient_rate", j), "%s", err.Error())
		}
	}
	if !s.WhenLimited.Valid() {
		k.add(key+".when_limited", "%q is not a choice: write \"next\" (the next smart host takes the mail) or "+
			"\"wait\" (the mail waits for this host)", s.WhenLimited)
	}
	for j, d := range s.Senders {
		if !validDomain(strings.TrimPrefix(d, "@")) {
			k.add(idx(key+".senders", j), "%q is not a domain: write the domain of envelope senders this host may "+
				"carry, e.g. \"contoso.com\"", d)
		}
	}
	if !s.DKIMSafeHeaders.Valid() {
		k.add(key+".dkim_safe_headers", "%s is not a choice: write \"auto\", true or false (without quotes)",
			s.DKIMSafeHeaders)
	}
}

func (c *Config) checkSmarthostAuth(k *checker, key string, s *Smarthost) {
	if !s.Auth.Valid() {
		k.add(key+".auth", "%q is not a choice: write \"auto\" (PLAIN or LOGIN, as the host offers), \"plain\", "+
			"\"login\", \"xoauth2\" (Microsoft 365, Google) or \"none\"", s.Auth)
		return
	}
	switch {
	case s.Auth == AuthNone && s.Username != "":
		k.add(key+".username", "is set but auth is \"none\": remove username, or set auth = \"auto\"")
	case (s.Auth == AuthPlain || s.Auth == AuthLogin || s.Auth == AuthXOAUTH2) && s.Username == "":
		what := "the account name"
		if s.Auth == AuthXOAUTH2 {
			what = "the mailbox the token may send as, e.g. \"relay@contoso.com\""
		}
		k.add(key+".username", "is empty but auth is %q: write %s", s.Auth, what)
	}
	if s.PasswordFile != "" && !s.UsesPassword() {
		why := "no username is set"
		if s.Auth == AuthXOAUTH2 {
			why = "auth = \"xoauth2\" logs in with a token"
		}
		k.add(key+".password_file", "is set but %s: remove password_file", why)
	}
	if s.Auth != AuthXOAUTH2 {
		if !s.OAuth2.empty() {
			k.add(key+".oauth2", "is set but auth is %q: set auth = \"xoauth2\" to log in with OAuth2, or remove "+
				"the [smarthosts.oauth2] table", s.Auth)
		}
		return
	}
	if s.OAuth2 == nil {
		k.add(key+".oauth2", "is missing: auth = \"xoauth2\" needs a [smarthosts.oauth2] table below this host "+
			"(provider, and for Microsoft tenant, client_id and the client secret)")
		return
	}
	c.checkOAuth2(k, key+".oauth2", s)
}

func (c *Config) checkOAuth2(k *checker, key string, s *Smarthost) {
	o := s.OAuth2
	if !o.Provider.Valid() {
		k.add(key+".provider", "%q is not a choice: write \"microsoft\", \"google\" or \"generic\"", o.Provider)
		return
	}
	switch o.Provider {
	case ProviderMicrosoft:
		if o.Tenant == "" && o.TokenURL == "" {
			k.add(key+".tenant", "is empty: write the Directory (tenant) ID or a verified domain, e.g. "+
				"\"contoso.onmicrosoft.com\"")
		} else if o.Tenant != "" && !validHostname(o.Tenant) {
			k.add(key+".tenant", "%q is neither a tenant ID nor a domain: copy the Directory (tenant) ID from the "+
				"app registration's overview", o.Tenant)
		}
	case ProviderGeneric:
		if o.TokenURL == "" {
			k.add(key+".token_url", "is empty: provider \"generic\" needs the token endpoint's URL")
		}
	case ProviderGoogle:
		if o.ServiceAccountFile == "" {
			k.add(key+".service_account_file", "is empty: write the path of the service account's JSON key "+
				"(Cloud console, IAM, Service accounts, Keys)")
		}
		checkFile(k, key+".service_account_file", o.ServiceAccountFile, "the service account key")
		if o.ClientID != "" || o.ClientSecretFile != "" || o.Tenant != "" {
			k.add(key+".client_id", "is used by provider \"microsoft\" and \"generic\" only: a Google service account "+
				"signs with its JSON key; remove client_id, client_secret_file and tenant")
		}
	}
	if o.Provider != ProviderGoogle {
		if o.ClientID == "" {
			k.add(key+".client_id", "is empty: write the application (client) ID of the app registration")
		}
		if o.ServiceAccountFile != "" {
			k.add(key+".service_account_file", "is used by provider \"google\" only: remove it")
		}
	}
	if o.TokenURL != "" {
		if why := checkTokenURL(o.TokenURL); why != "" {
			k.add(key+".token_url", "%q %s", o.TokenURL, why)
		}
	}
	if _, err := o.SecretExpires(); err != nil {
		k.add(key+".client_secret_expires", "%q %s", o.ClientSecretExpires, err.Error())
	}
	for j, sc := range o.Scopes {
		if strings.TrimSpace(sc) == "" || strings.ContainsAny(sc, " \t") {
			k.add(idx(key+".scopes", j), "%q is not a scope: write one scope per entry, e.g. "+
				"\"https://outlook.office365.com/.default\"", sc)
		}
	}
}

// checkTokenURL returns why u cannot be a token endpoint: it must be https, except on a loopback address where
// the secret does not cross a network (tests, a local token proxy).
func checkTokenURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
		return "is not a URL: write the token endpoint, e.g. \"https://login.example/oauth2/token\""
	}
	if p.Scheme == "http" {
		host := p.Hostname()
		if ip := net.ParseIP(host); !(strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()) {
			return "is plain http: the client secret would cross the network readable; write the https URL"
		}
	}
	return ""
}

// empty reports a table that sets nothing (also a missing one): what `config check` prints for a host without
// OAuth2 reads back as one.
func (o *OAuth2) empty() bool {
	return o == nil || o.Provider == "" && o.Tenant == "" && o.ClientID == "" && o.ClientSecretFile == "" &&
		o.ClientSecretExpires == "" && o.ServiceAccountFile == "" && o.TokenURL == "" && len(o.Scopes) == 0
}
