package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/relay/dane"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// Resolver is the DNS the engine needs besides what delivery already looked up: TLSA records.
type Resolver interface {
	LookupTLSA(ctx context.Context, host string, port int) (dnscheck.TLSAAnswer, error)
}

// Session is the TLS outcome of one session with an MX host under a published policy, as TLS-RPT counts it
// (RFC 8460 4.3): Result is "success" or the failure's result type.
type Session struct {
	Domain string
	Host   string
	Type   string // TypeSTS or TypeTLSA
	Result string
	Detail string // the failure, for the log
}

// Success is the Result of a session that met its policy.
const Success = "success"

// Options configure an Engine.
type Options struct {
	Resolver Resolver
	MTASTS   *mtasts.Cache // nil: MTA-STS off whatever delivery.mta_sts says
	DANE     *DANEState    // nil: DANE off
	RootCAs  *x509.CertPool
	Now      func() time.Time
	Log      *slog.Logger
	// OnSession is told of every session under a policy (TLS-RPT counts, metrics). It must not block.
	OnSession func(Session)
}

// Engine applies the policies. It is safe for concurrent use.
type Engine struct{ o Options }

// New returns an engine.
func New(o Options) *Engine {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Engine{o: o}
}

// Refusal is why an MX host may not be used now, or why a domain's mail must wait: always a deferral.
type Refusal struct {
	Policy   string // PolicyMTASTS, PolicyDANE, or "" for a delivery.tls_policy level
	Enhanced smtpstatus.Enhanced
	Text     string
}

// Domain is the policy of one recipient domain for one delivery attempt.
type Domain struct {
	e     *Engine
	s     Settings
	name  string
	level config.TLSLevel // an override's; "" when none applies
	sts   *mtasts.Policy  // enforce or testing; nil when no MTA-STS policy applies
	stsID string
}

// Host is what delivery knows of one MX host when it asks for its policy.
type Host struct {
	Name string
	// MXAuthentic and AddrsAuthentic: the domain's MX RRset and the host's addresses were DNSSEC-validated.
	MXAuthentic, AddrsAuthentic bool
	Canonical                   string // the host's CNAME-expanded name, when it differs
	Port                        int    // the SMTP port (TLSA records are per port: _25._tcp)
}

// ForDomain finds the policy of domain: an override, or the domain's MTA-STS policy (from the cache). The
// refusal, when the MTA-STS record could not be looked up and no policy is held, defers all of its mail.
func (e *Engine) ForDomain(ctx context.Context, s Settings, domain string) (*Domain, *Refusal) {
	d := &Domain{e: e, s: s, name: strings.ToLower(strings.TrimSuffix(domain, "."))}
	if lvl, ok := s.Override(d.name); ok {
		d.level = lvl
		return d, nil
	}
	if s.Base == smtpclient.TLSOff || !s.MTASTS || e.o.MTASTS == nil {
		return d, nil
	}
	r, err := e.o.MTASTS.Get(ctx, d.name)
	if err != nil {
		return nil, &Refusal{Policy: PolicyMTASTS, Enhanced: smtpstatus.Enhanced{4, 4, 3},
			Text: "MTA-STS record of " + d.name + " could not be looked up (" + oneLine(err) + "); the mail waits, " +
				"since a policy may exist"}
	}
	if r.Policy != nil && r.Policy.Mode != mtasts.ModeNone {
		d.sts, d.stsID = r.Policy, r.ID
	}
	return d, nil
}

// Name is the recipient domain.
func (d *Domain) Name() string { return d.name }

// ForHost returns how to secure the sessions with one MX host, or why it must not be used.
func (d *Domain) ForHost(ctx context.Context, h Host) (smtpclient.TLSPolicy, *Refusal) {
	host := strings.ToLower(strings.TrimSuffix(h.Name, "."))
	if h.Port == 0 {
		h.Port = 25
	}
	base := d.base()
	if d.level != "" {
		return d.forLevel(ctx, host, h)
	}
	if d.s.Base == smtpclient.TLSOff {
		return base, nil
	}
	if d.s.DANE && d.e.o.DANE.Active() && h.MXAuthentic && h.AddrsAuthentic {
		p, ref, decided := d.forDANE(ctx, host, h, false)
		if decided {
			return p, ref
		}
		// Secure but unusable TLSA records: TLS required, unverified (RFC 7672 2.2), unless MTA-STS enforce or
		// delivery.tls = "verify" asks for more, which then applies.
		if p.Mode == smtpclient.TLSRequired && d.s.Base != smtpclient.TLSRequired && (d.sts == nil || d.sts.Mode != mtasts.ModeEnforce) {
			return p, nil
		}
	}
	return d.forMTASTS(host, base)
}

// base is delivery.tls for a host with no policy.
func (d *Domain) base() smtpclient.TLSPolicy {
	return smtpclient.TLSPolicy{Mode: d.s.Base, Verify: d.s.Base == smtpclient.TLSRequired, RootCAs: d.e.o.RootCAs}
}

// forMTASTS applies the domain's MTA-STS policy to a host without DANE.
func (d *Domain) forMTASTS(host string, base smtpclient.TLSPolicy) (smtpclient.TLSPolicy, *Refusal) {
	if d.sts == nil {
		return base, nil
	}
	if d.sts.Mode == mtasts.ModeTesting {
		if !d.sts.Matches(host) {
			d.report(host, TypeSTS, "validation-failure", "not listed in the policy")
			d.e.o.Log.Info("MTA-STS testing: the policy would not allow this MX host", "domain", d.name, "mx", host,
				"policy_id", d.stsID, "allowed", strings.Join(d.sts.MX, " "))
			return base, nil
		}
		// Delivered as without a policy; Succeeded checks afterwards what enforce would have said. With
		// delivery.tls = "verify" the session is checked anyway, and its failure is not the policy's.
		if base.Mode == smtpclient.TLSOpportunistic {
			base.Policy = PolicyMTASTS
		}
		return base, nil
	}
	if !d.sts.Matches(host) {
		d.report(host, TypeSTS, "validation-failure", "not listed in the policy")
		return smtpclient.TLSPolicy{}, &Refusal{Policy: PolicyMTASTS, Enhanced: smtpstatus.Enhanced{4, 7, 0},
			Text: fmt.Sprintf("MTA-STS policy of %s (enforce, id %s) does not list MX host %s (allowed: %s): not used",
				d.name, d.stsID, host, strings.Join(d.sts.MX, " "))}
	}
	return smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Verify: true, RootCAs: d.e.o.RootCAs, ServerName: host,
		MinVersion: tls.VersionTLS12, Level: LevelMTASTS, Policy: PolicyMTASTS}, nil
}

// forDANE looks up the host's TLSA records. decided: the result stands (usable records, or a failure); else
// p is the fallback for records that are secure but unusable (TLS required, unverified), or the zero policy
// when the host has no DANE.
func (d *Domain) forDANE(ctx context.Context, host string, h Host, required bool) (p smtpclient.TLSPolicy, ref *Refusal, decided bool) {
	// RFC 7672 2.2.2: the CNAME-expanded name first, when the chain to it is signed, then the MX name.
	names := []string{host}
	if c := strings.ToLower(h.Canonical); c != "" && c != host {
		names = []string{c, host}
	}
	var ans dnscheck.TLSAAnswer
	var err error
	base := host
	for _, n := range names {
		ans, err = d.e.o.Resolver.LookupTLSA(ctx, n, h.Port)
		if err != nil || (ans.Authentic && len(ans.Records) > 0) {
			base = n
			break
		}
	}
	if err != nil {
		d.report(host, TypeTLSA, "dnssec-invalid", oneLine(err))
		return smtpclient.TLSPolicy{}, &Refusal{Policy: PolicyDANE, Enhanced: smtpstatus.Enhanced{4, 7, 5},
			Text: fmt.Sprintf("DANE: TLSA lookup for %s failed (%s); this MX host is not used until it answers", host, oneLine(err))}, true
	}
	if !ans.Authentic || len(ans.Records) == 0 {
		return smtpclient.TLSPolicy{}, nil, false
	}
	var usable []dane.Record
	for _, r := range ans.Records {
		rec := dane.Record{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: r.Data}
		if dane.Usable(rec) {
			usable = append(usable, rec)
		}
	}
	if len(usable) == 0 {
		d.e.o.Log.Info("DANE: TLSA records are signed but none is usable; TLS is required, unverified",
			"domain", d.name, "mx", host, "tlsa", ans.Name)
		return smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Level: LevelEncrypt, Policy: PolicyDANE}, nil, required
	}
	// Reference identifiers for DANE-TA: the TLSA base domain (the MX name, or its CNAME target) and the
	// next-hop domain (RFC 7672 3.2.2). SNI carries the TLSA base domain (RFC 7672 8.1).
	refNames := []string{base, d.name}
	if base != host {
		refNames = append(refNames, host)
	}
	now := d.e.o.Now
	return smtpclient.TLSPolicy{
		Mode:       smtpclient.TLSRequired,
		ServerName: base,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return dane.Verify(usable, cs, refNames, now())
		},
		Level:  LevelDANE,
		Policy: PolicyDANE,
	}, nil, true
}

// forLevel applies a delivery.tls_policy level.
func (d *Domain) forLevel(ctx context.Context, host string, h Host) (smtpclient.TLSPolicy, *Refusal) {
	switch d.level {
	case config.TLSLevelNone:
		return smtpclient.TLSPolicy{Mode: smtpclient.TLSOff, Level: LevelNone}, nil
	case config.TLSLevelMay:
		return smtpclient.TLSPolicy{Mode: smtpclient.TLSOpportunistic, Level: LevelMay}, nil
	case config.TLSLevelEncrypt:
		return smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Level: LevelEncrypt}, nil
	case config.TLSLevelVerify:
		return smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Verify: true, RootCAs: d.e.o.RootCAs, ServerName: host,
			Level: LevelVerify}, nil
	}
	// dane-only: a host without usable, authentic TLSA records is not used.
	why := ""
	switch {
	case !d.e.o.DANE.Active():
		st, _ := d.e.o.DANE.Status()
		why = "DANE is off (" + st.Detail + ")"
	case !h.MXAuthentic:
		why = "the MX records of " + d.name + " are not DNSSEC-signed"
	case !h.AddrsAuthentic:
		why = "the addresses of " + host + " are not DNSSEC-signed"
	default:
		p, ref, _ := d.forDANE(ctx, host, h, true)
		if ref != nil || p.VerifyConnection != nil {
			return p, ref
		}
		why = "no usable DNSSEC-signed TLSA record"
	}
	d.report(host, TypeTLSA, "dane-required", why)
	return smtpclient.TLSPolicy{}, &Refusal{Policy: PolicyDANE, Enhanced: smtpstatus.Enhanced{4, 7, 5},
		Text: fmt.Sprintf("DANE required for %s (delivery.tls_policy level dane-only): %s for MX host %s; not used", d.name, why, host)}
}

// Failed turns a TLS failure with host under an enforced policy (Enforced(p)) into the refusal that defers its
// mail, naming the policy, and counts it for TLS-RPT. The enhanced code is 4.7.4 when STARTTLS was not offered
// (as Postfix's "TLS is required, but was not offered"), else 4.7.5 (cryptographic failure).
func (d *Domain) Failed(host string, p smtpclient.TLSPolicy, cause error) *Refusal {
	result := resultOf(cause)
	typ := TypeSTS
	if p.Policy == PolicyDANE {
		typ = TypeTLSA
	}
	d.report(host, typ, result, oneLine(cause))
	enh := smtpstatus.Enhanced{4, 7, 5}
	if result == "starttls-not-supported" {
		enh = smtpstatus.Enhanced{4, 7, 4}
	}
	what := "requires verified TLS"
	switch {
	case p.Policy == PolicyDANE && p.VerifyConnection != nil:
		what = "(TLSA records) requires TLS with the certificate they name"
	case p.Policy == PolicyDANE:
		what = "(TLSA records, none usable) requires TLS"
	}
	name := p.Policy
	if p.Policy == PolicyMTASTS {
		name = "MTA-STS policy of " + d.name + " (enforce, id " + d.stsID + ")"
	}
	return &Refusal{Policy: p.Policy, Enhanced: enh, Text: fmt.Sprintf("%s %s with %s: %s; not sent in clear", name, what, host, oneLine(cause))}
}

// Succeeded records a session opened with host under p: a success for TLS-RPT, and for an MTA-STS policy in
// testing mode, what enforce would have said (STARTTLS missing, a certificate that does not verify), logged
// and counted.
func (d *Domain) Succeeded(host string, p smtpclient.TLSPolicy, state tls.ConnectionState, secure bool) {
	switch {
	case Enforced(p) && p.Policy == PolicyDANE:
		d.report(host, TypeTLSA, Success, "")
	case Enforced(p):
		d.report(host, TypeSTS, Success, "")
	case p.Policy == PolicyMTASTS:
		err := d.pkixCheck(host, state, secure)
		if err == nil {
			d.report(host, TypeSTS, Success, "")
			return
		}
		d.report(host, TypeSTS, resultOf(err), oneLine(err))
		d.e.o.Log.Info("MTA-STS testing: enforce would have refused this session", "domain", d.name, "mx", host,
			"policy_id", d.stsID, "err", oneLine(err))
	}
}

// pkixCheck is MTA-STS enforce's check of a session that has already happened.
func (d *Domain) pkixCheck(host string, state tls.ConnectionState, secure bool) error {
	if !secure {
		return smtpclient.ErrNoSTARTTLS
	}
	if state.Version < tls.VersionTLS12 {
		return errors.New("TLS version below 1.2")
	}
	if len(state.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: d.e.o.RootCAs,
		Intermediates: inter, CurrentTime: d.e.o.Now()})
	return err
}

func (d *Domain) report(host, typ, result, detail string) {
	if d.e.o.OnSession != nil {
		d.e.o.OnSession(Session{Domain: d.name, Host: host, Type: typ, Result: result, Detail: detail})
	}
}

// Refresh looks for a new MTA-STS policy of domain now (before a bounce of mail its policy kept back, RFC 8461
// 5.1) and reports whether one now applies.
func (e *Engine) Refresh(ctx context.Context, domain string) bool {
	if e.o.MTASTS == nil {
		return false
	}
	changed, err := e.o.MTASTS.Refresh(ctx, domain)
	if err != nil {
		e.o.Log.Warn("MTA-STS policy could not be looked for again before the bounce", "domain", domain, "err", err)
	}
	return changed
}

// resultOf is the TLS-RPT result type (RFC 8460 4.3) of a TLS failure.
func resultOf(err error) string {
	var de *dane.Error
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &de):
		return de.Result
	case errors.Is(err, smtpclient.ErrNoSTARTTLS):
		return "starttls-not-supported"
	case errors.As(err, &he):
		return "certificate-host-mismatch"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "certificate-expired"
	case errors.As(err, &ua):
		return "certificate-not-trusted"
	}
	return "validation-failure"
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
