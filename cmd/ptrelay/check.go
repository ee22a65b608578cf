package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/relay/admin"
	"ptrelay/relay/dkim"
)

// checkResult is `ptrelay check -json`'s document.
type checkResult struct {
	Domain    string            `json:"domain,omitempty"`
	Hostname  string            `json:"hostname"`
	MX        []dnscheck.Check  `json:"mx,omitempty"`
	Reports   []dnscheck.Report `json:"reports"`
	Smarthost []dnscheck.Check  `json:"smarthost,omitempty"`
	// DKIM are the DKIM lines of the domain's keys and its DMARC line.
	DKIM []dnscheck.Check `json:"dkim,omitempty"`
	// TLSClients are the running daemon's recent STARTTLS clients, when it answers on its admin socket.
	TLSClients []admin.TLSClient `json:"tls_clients,omitempty"`
	Verdict    dnscheck.Verdict  `json:"verdict"`
	Exit       int               `json:"exit"`
}

// runCheck is the Knowledge-Base checklist: what receivers will see of this machine, one line per check with
// the fix, then the DKIM lines of the domain's keys and its DMARC line. Exit 0: direct delivery is fit; 1: use a
// smart host, or a DKIM/DMARC line fails (receivers would not verify what ptrelay signs); 2: cannot tell.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "", "configuration file")
	domain := fs.String("domain", "", "your sending domain (default: the domain of hostname)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("configuration: %v", joinLines(err))
	}
	res, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: cfg.DNS.Resolvers, Timeout: cfg.DNS.Timeout.D()})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	d := strings.TrimSuffix(*domain, ".")
	if d == "" {
		d = cfg.SendingDomain()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out := checkResult{Domain: d, Hostname: cfg.Hostname}
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
	if cfg.Smarthost.Configured() && d != "" {
		host, _, err := net.SplitHostPort(cfg.Smarthost.Address)
		if err == nil {
			out.Smarthost = append(out.Smarthost, dnscheck.CheckSPFHost(ctx, res, d, host))
		}
	}
	if d != "" {
		signer := dkim.LoadEach(cfg)
		out.DKIM = append(signer.Check(ctx, res, d, time.Now()), signer.CheckDMARC(ctx, res, d))
	}
	if c, _, err := dialAdmin(cfg); err == nil {
		if st, err := c.Status(); err == nil {
			out.TLSClients = st.TLSClients
		}
		_ = c.Close()
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
	if out.Exit == 0 && dkimFails(out.DKIM) {
		out.Exit = 1 // receivers will refuse or junk the mail whatever the route: not fit
	}
	if *asJSON {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		renderCheck(stdout, out, cfg.Smarthost.Configured())
	}
	if out.Exit != 0 {
		return exitError{out.Exit}
	}
	return nil
}

func renderCheck(w io.Writer, r checkResult, haveSmarthost bool) {
	fmt.Fprintf(w, "ptrelay check: hostname %s", r.Hostname)
	if r.Domain != "" {
		fmt.Fprintf(w, ", domain %s", r.Domain)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	line := func(c dnscheck.Check) {
		fmt.Fprintf(w, "  %-7s %s: %s\n", c.Level(), c.Title, c.Detail)
		if c.Fix != "" && c.Level() != "ok" {
			fmt.Fprintf(w, "          fix: %s\n", c.Fix)
		}
	}
	for _, c := range r.MX {
		line(c)
	}
	for _, rep := range r.Reports {
		for _, c := range rep.Checks {
			line(c)
		}
	}
	for _, c := range r.Smarthost {
		line(c)
	}
	for _, c := range r.DKIM {
		line(c)
	}
	for _, c := range r.TLSClients {
		level, note := "ok", ""
		if c.Legacy() {
			level, note = "warn", " (allowed only by smtp.tls_legacy: upgrade that server's TLS when you can)"
		}
		fmt.Fprintf(w, "  %-7s TLS client %s: negotiated %s %s%s\n", level, c.Client, c.Version, c.Cipher, note)
	}
	fmt.Fprintln(w)
	switch r.Verdict {
	case dnscheck.VerdictDirectOK:
		fmt.Fprintln(w, "Verdict: direct-ok. Receivers should accept mail sent directly from this machine.")
	case dnscheck.VerdictSmarthost:
		fmt.Fprintln(w, "Verdict: smarthost. Big receivers will refuse mail sent directly from this machine:")
		for _, rep := range r.Reports {
			for _, reason := range rep.Reasons {
				if rep.Verdict == dnscheck.VerdictSmarthost {
					fmt.Fprintf(w, "  - %s\n", reason)
				}
			}
		}
		if haveSmarthost {
			fmt.Fprintln(w, "ptrelay sends through your smart host (routing.mode = \"auto\") until the lines marked fail are fixed.")
		} else {
			fmt.Fprintln(w, "Fix the lines marked fail, or configure a [smarthost] (your ISP's or provider's) and ptrelay will use it.")
		}
	default:
		fmt.Fprintln(w, "Verdict: unknown. The checks could not finish (see the lines marked unknown); run again later.")
	}
	if dkimFails(r.DKIM) {
		fmt.Fprintln(w, "DKIM: receivers will not verify what ptrelay signs until the DKIM lines marked fail are fixed.")
	}
}

// dkimFails reports a DKIM or DMARC line that fails (not a warning): signed mail would fail at receivers.
func dkimFails(cs []dnscheck.Check) bool {
	for _, c := range cs {
		if c.Level() == "fail" {
			return true
		}
	}
	return false
}
