// Package tlspolicy decides how direct delivery secures the session with each MX host of a recipient domain:
// delivery.tls, raised by the domain's MTA-STS policy (RFC 8461) and by the host's DANE TLSA records
// (RFC 7672), or replaced by a [[delivery.tls_policy]] entry in Postfix's words. The rules:
//
//   - An override (delivery.tls_policy) decides alone; so does delivery.tls = "none".
//   - DANE first: with DANE active (dane = "auto" and a validating, trusted resolver), an MX host whose MX
//     RRset and addresses are DNSSEC-authentic has its TLSA records looked up. Usable records make STARTTLS
//     mandatory with the certificate they name (MTA-STS is then not applied: DANE wins, RFC 8461 2); records
//     that are secure but unusable make STARTTLS mandatory, unverified (or MTA-STS's check when it applies);
//     a failed lookup (SERVFAIL: bogus or broken) makes the host unusable, never a downgrade.
//   - MTA-STS for the other hosts: enforce allows only the MX hosts the policy lists, with STARTTLS, a
//     certificate valid for the MX name (PKIX) and TLS 1.2 or later; testing only reports.
//
// A host refused, and a TLS failure under a policy, are deferrals (4.7.x): never plaintext, never a bounce
// before queue.lifetime, never a reroute through the smart host. Smart-host routes never get here.
//
// The package also keeps the counts TLS-RPT (RFC 8460) reports are made of (report.go), the DANE switch fed by
// the DNSSEC probe (dane.go), and the recipient-side view of `ptrelay check -domain` (check.go).
package tlspolicy

import (
	"strings"

	"ptrelay/config"
	"ptrelay/relay/smtpclient"
)

// Levels: the words of the log's tls= field, as Postfix 3.11 writes them.
const (
	LevelNone    = "none"
	LevelMay     = "may"
	LevelEncrypt = "encrypt"
	LevelVerify  = "verify"
	LevelDANE    = "dane"
	LevelMTASTS  = "mta-sts"
)

// Policy names: what deferrals, alerts and the DSN call the policy that kept mail back.
const (
	PolicyMTASTS = "MTA-STS"
	PolicyDANE   = "DANE"
)

// TLS-RPT policy types (RFC 8460 4.4).
const (
	TypeSTS  = "sts"
	TypeTLSA = "tlsa"
)

// Settings are the configuration keys the decisions depend on, read once per configuration load.
type Settings struct {
	Base      smtpclient.TLSMode // delivery.tls
	MTASTS    bool               // delivery.mta_sts
	DANE      bool               // delivery.dane = "auto" (whether it is active also needs the resolver)
	Overrides []Override         // delivery.tls_policy, in order
}

// Override is one [[delivery.tls_policy]] entry.
type Override struct {
	Domains []string // "example.com", or ".example.com" for its subdomains
	Level   config.TLSLevel
}

// NewSettings reads the keys from a validated configuration.
func NewSettings(cfg *config.Config) Settings {
	s := Settings{MTASTS: cfg.Delivery.MTASTS, DANE: cfg.Delivery.DANE == config.DANEAuto}
	switch cfg.Delivery.TLS {
	case config.DeliveryNoTLS:
		s.Base = smtpclient.TLSOff
	case config.DeliveryVerify:
		s.Base = smtpclient.TLSRequired
	default:
		s.Base = smtpclient.TLSOpportunistic
	}
	for _, r := range cfg.Delivery.TLSPolicy {
		o := Override{Level: r.Level}
		for _, d := range r.Domains {
			o.Domains = append(o.Domains, strings.ToLower(strings.TrimSuffix(d, ".")))
		}
		s.Overrides = append(s.Overrides, o)
	}
	return s
}

// Override returns the level of the first override matching domain.
func (s Settings) Override(domain string) (config.TLSLevel, bool) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, o := range s.Overrides {
		for _, d := range o.Domains {
			if sub, ok := strings.CutPrefix(d, "."); ok {
				if strings.HasSuffix(domain, "."+sub) {
					return o.Level, true
				}
			} else if domain == d {
				return o.Level, true
			}
		}
	}
	return "", false
}

// LevelOf is the tls= word for a session secured as p says.
func LevelOf(p smtpclient.TLSPolicy) string {
	if p.Level != "" {
		return p.Level
	}
	switch {
	case p.Mode == smtpclient.TLSOff:
		return LevelNone
	case p.Mode == smtpclient.TLSOpportunistic:
		return LevelMay
	case p.Verify:
		return LevelVerify
	}
	return LevelEncrypt
}

// Enforced reports a session whose TLS a recipient's policy (MTA-STS enforce, DANE) requires: its failure is
// that policy's, a deferral.
func Enforced(p smtpclient.TLSPolicy) bool {
	return p.Policy != "" && p.Mode == smtpclient.TLSRequired
}
