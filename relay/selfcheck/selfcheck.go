// Package selfcheck is `ptrelay check`, the DNS doctor: what receivers will see of this machine (its egress
// address, PTR, forward-confirmed name, block lists, port 25), the MX of the sending domain, each smart host
// reached and logged in to (no mail sent) and its SPF, one line per check with the fix, and the verdict. The CLI runs it with its own resolver and prints
// it (Render); the daemon's web console runs it on request with the daemon's resolver and shows the same Result.
// The checks themselves are dnscheck's; this package only assembles them from the configuration.
package selfcheck

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/relay/admin"
	"ptrelay/relay/dkim"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/tlspolicy"
)

// Result is the check's report, and `ptrelay check -json`'s document.
type Result struct {
	Domain    string            `json:"domain,omitempty"`
	Hostname  string            `json:"hostname"`
	MX        []dnscheck.Check  `json:"mx,omitempty"`
	Reports   []dnscheck.Report `json:"reports"`
	Smarthost []dnscheck.Check  `json:"smarthost,omitempty"`
	// DKIM are the DKIM lines of the domain's keys and its DMARC line.
	DKIM []dnscheck.Check `json:"dkim,omitempty"`
	// DNSSEC says whether DANE can be used (a trusted, validating resolver).
	DNSSEC dnscheck.Check `json:"dnssec"`
	// Recipient is -domain D seen as a recipient: its MTA-STS policy and DANE records, and what ptrelay would
	// do with mail to it (only when a domain was asked for).
	Recipient []dnscheck.Check `json:"recipient,omitempty"`
	// TLSClients are the running daemon's recent STARTTLS clients, when it could be asked.
	TLSClients []admin.TLSClient `json:"tls_clients,omitempty"`
	Verdict    dnscheck.Verdict  `json:"verdict"`
	// Exit is the command's exit code: 0 direct delivery is fit, 1 use a smart host, 2 cannot tell.
	Exit int `json:"exit"`
	// HaveSmarthost: a smart host is configured (the verdict's advice depends on it).
	HaveSmarthost bool `json:"-"`
}

// Options are a run's inputs beside the configuration.
type Options struct {
	// Domain is the sending domain to check; "" means the domain of hostname.
	Domain string
	// Resolver answers the lookups; nil: a new one from dns.resolvers and dns.timeout.
	Resolver *dnscheck.Resolver
	// TLSClients are the running daemon's recent STARTTLS clients, shown as lines of their own.
	TLSClients []admin.TLSClient
}

// Run performs every check of cfg. ctx bounds it (the CLI gives it two minutes); the error is only for a
// resolver that cannot be made from the configuration.
func Run(ctx context.Context, cfg *config.Config, o Options) (Result, error) {
	res := o.Resolver
	if res == nil {
		var err error
		res, err = dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: cfg.DNS.Resolvers, Timeout: cfg.DNS.Timeout.D(),
			TrustAD: dnscheck.TrustAD(cfg.DNS.TrustAD)})
		if err != nil {
			return Result{}, fmt.Errorf("dns: %w", err)
		}
	}
	d := strings.TrimSuffix(o.Domain, ".")
	if d == "" {
		d = cfg.SendingDomain()
	}
	out := Result{Domain: d, Hostname: cfg.Hostname, TLSClients: o.TLSClients, HaveSmarthost: cfg.HasSmarthosts()}
	if d != "" {
		out.MX = []dnscheck.Check{dnscheck.CheckMX(ctx, res, d)}
	}
	opts := dnscheck.SelfCheckOptions{
		Resolver: res, Hostname: cfg.Hostname, Domain: d,
		Egress: dnscheck.EgressOptions{Static: cfg.Egress.IP, Discovery: cfg.Egress.Discovery,
			Whoami: cfg.Egress.Whoami, Timeout: cfg.DNS.Timeout.D()},
		DNSBL: cfg.Egress.DNSBL, Port25Probe: cfg.Egress.Port25Probe,
	}
	for _, f := range []dnscheck.Family{dnscheck.IPv4, dnscheck.IPv6} {
		out.Reports = append(out.Reports, dnscheck.SelfCheck(ctx, opts, f))
	}
	out.Smarthost = checkSmarthosts(ctx, cfg, res, d)
	if d != "" {
		signer := dkim.LoadEach(cfg)
		out.DKIM = append(signer.Check(ctx, res, d, time.Now()), signer.CheckDMARC(ctx, res, d))
	}
	dnssec := res.ProbeDNSSEC(ctx, ".")
	out.DNSSEC = tlspolicy.DNSSECCheck(dnssec, cfg.Delivery.DANE == config.DANEAuto)
	if strings.TrimSuffix(o.Domain, ".") != "" {
		bind, _ := netip.ParseAddr(cfg.Delivery.Bind)
		out.Recipient = tlspolicy.CheckDomain(ctx, tlspolicy.CheckInput{
			Resolver: res,
			Fetcher:  &mtasts.Fetcher{DialContext: mtasts.NewResolverDialer(res.LookupAddrs, bind)},
			Settings: tlspolicy.NewSettings(cfg),
			DANE:     dnssec.Validating && cfg.Delivery.DANE == config.DANEAuto,
		}, d)
	}
	out.Verdict = dnscheck.Overall(out.Reports)
	switch out.Verdict {
	case dnscheck.VerdictDirectOK:
		out.Exit = 0
	case dnscheck.VerdictSmarthost:
		out.Exit = 1
	default:
		out.Exit = 2
	}
	if out.Exit == 0 && out.DKIMFails() {
		out.Exit = 1 // receivers will refuse or junk the mail whatever the route: not fit
	}
	return out, nil
}

// Checks returns every check line about this machine in the order they are shown: MX, each family's checks, the
// smart host's SPF, DNSSEC. The recipient domain's lines are Recipient, shown under their own heading.
func (r Result) Checks() []dnscheck.Check {
	var out []dnscheck.Check
	out = append(out, r.MX...)
	for _, rep := range r.Reports {
		out = append(out, rep.Checks...)
	}
	out = append(out, r.Smarthost...)
	out = append(out, r.DKIM...)
	if r.DNSSEC.Title != "" {
		out = append(out, r.DNSSEC)
	}
	return out
}

// DKIMFails reports a DKIM or DMARC line that fails (not a warning): signed mail would fail at receivers.
func (r Result) DKIMFails() bool {
	for _, c := range r.DKIM {
		if c.Level() == "fail" {
			return true
		}
	}
	return false
}

// TLSLine is a STARTTLS client as a check line shows it: "ok", or "warn" with the note for legacy TLS.
func TLSLine(c admin.TLSClient) (level, text string) {
	level, note := "ok", ""
	if c.Legacy() {
		level, note = "warn", " (allowed only by smtp.tls_legacy: upgrade that server's TLS when you can)"
	}
	return level, fmt.Sprintf("TLS client %s: negotiated %s %s%s", c.Client, c.Version, c.Cipher, note)
}

// Summary is the verdict in words: a headline, the reasons (for smarthost), and what happens or what to do.
type Summary struct {
	Headline string
	Reasons  []string
	Advice   string
	DKIM     string // said when a DKIM or DMARC line fails, whatever the verdict
}

// Summary words the verdict, the same for the terminal and the web console.
func (r Result) Summary() Summary {
	s := r.verdictSummary()
	if r.DKIMFails() {
		s.DKIM = "DKIM: receivers will not verify what ptrelay signs until the DKIM lines marked fail are fixed."
	}
	return s
}

func (r Result) verdictSummary() Summary {
	switch r.Verdict {
	case dnscheck.VerdictDirectOK:
		return Summary{Headline: "Verdict: direct-ok. Receivers should accept mail sent directly from this machine."}
	case dnscheck.VerdictSmarthost:
		s := Summary{Headline: "Verdict: smarthost. Big receivers will refuse mail sent directly from this machine:"}
		for _, rep := range r.Reports {
			if rep.Verdict == dnscheck.VerdictSmarthost {
				s.Reasons = append(s.Reasons, rep.Reasons...)
			}
		}
		if r.HaveSmarthost {
			s.Advice = "ptrelay sends through your smart host (routing.mode = \"auto\") until the lines marked fail are fixed."
		} else {
			s.Advice = "Fix the lines marked fail, or configure a smart host in [[smarthosts]] (your ISP's or provider's) and ptrelay will use it."
		}
		return s
	}
	return Summary{Headline: "Verdict: unknown. The checks could not finish (see the lines marked unknown); run again later."}
}

// Render prints the report as `ptrelay check` does.
func Render(w io.Writer, r Result) {
	fmt.Fprintf(w, "ptrelay check: hostname %s", r.Hostname)
	if r.Domain != "" {
		fmt.Fprintf(w, ", domain %s", r.Domain)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	line := func(c dnscheck.Check) {
		fmt.Fprintf(w, "  %-7s %s: %s\n", c.Level(), c.Title, c.Detail)
		if c.Fix != "" && c.Level() != "ok" {
			// A fix of several lines (the unbound configuration for DANE) keeps its lines, indented.
			fmt.Fprintf(w, "          fix: %s\n", strings.ReplaceAll(c.Fix, "\n", "\n               "))
		}
	}
	for _, c := range r.Checks() {
		line(c)
	}
	if len(r.Recipient) > 0 {
		fmt.Fprintf(w, "\nMail to %s (outbound TLS policy):\n", r.Domain)
		for _, c := range r.Recipient {
			line(c)
		}
	}
	for _, c := range r.TLSClients {
		level, text := TLSLine(c)
		fmt.Fprintf(w, "  %-7s %s\n", level, text)
	}
	fmt.Fprintln(w)
	s := r.Summary()
	fmt.Fprintln(w, s.Headline)
	for _, reason := range s.Reasons {
		fmt.Fprintf(w, "  - %s\n", reason)
	}
	if s.Advice != "" {
		fmt.Fprintln(w, s.Advice)
	}
	if s.DKIM != "" {
		fmt.Fprintln(w, s.DKIM)
	}
}
