package tlspolicy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"ptrelay/dnscheck"
	"ptrelay/relay/dane"
	"ptrelay/relay/mtasts"
)

// The recipient-side view of `ptrelay check -domain D`: does D publish MTA-STS and DANE, and what would ptrelay
// do with its mail under them. Nothing here is a reason for the smart host, so every check is non-blocking.

// DNSSECCheck is the checklist line about DANE's precondition: a validating resolver that ptrelay trusts.
func DNSSECCheck(st dnscheck.DNSSECStatus, enabled bool) dnscheck.Check {
	c := dnscheck.Check{ID: "dnssec", Title: "DNSSEC validation (for DANE)", Detail: st.Detail}
	switch {
	case !enabled:
		c.Status, c.Detail = dnscheck.StatusNone, `delivery.dane = "off": DANE is not used`
	case st.Validating:
		c.Status, c.Detail = dnscheck.StatusPass, st.Detail+": DANE is on"
	case st.Temporary:
		c.Status, c.Fix = dnscheck.StatusTempError, st.Fix
	default:
		c.Status, c.Detail, c.Fix = dnscheck.StatusFail, "DANE is off: "+st.Detail, st.Fix
	}
	return c
}

// CheckInput is what CheckDomain works with.
type CheckInput struct {
	Resolver *dnscheck.Resolver
	Fetcher  *mtasts.Fetcher
	Settings Settings
	DANE     bool // DANE active (the resolver validates)
	Port     int  // delivery.port, for the TLSA name
}

// CheckDomain looks at domain as a recipient: its override, MTA-STS policy and the DANE records of its MX
// hosts, each line saying what ptrelay would do.
func CheckDomain(ctx context.Context, in CheckInput, domain string) []dnscheck.Check {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if lvl, ok := in.Settings.Override(domain); ok {
		return []dnscheck.Check{{ID: "tls-policy:" + domain, Title: "TLS policy for mail to " + domain,
			Status: dnscheck.StatusPass, Detail: fmt.Sprintf("delivery.tls_policy sets level %q: MTA-STS and DANE are not "+
				"looked at", lvl)}}
	}
	mx, mxErr := in.Resolver.LookupMXDNSSEC(ctx, domain)
	out := []dnscheck.Check{checkMTASTS(ctx, in, domain, mx, mxErr)}
	return append(out, checkDANE(ctx, in, domain, mx, mxErr)...)
}

func checkMTASTS(ctx context.Context, in CheckInput, domain string, mx dnscheck.MXAnswer, mxErr error) dnscheck.Check {
	c := dnscheck.Check{ID: "mta-sts:" + domain, Title: "MTA-STS of " + domain}
	if !in.Settings.MTASTS {
		c.Status, c.Detail = dnscheck.StatusNone, "delivery.mta_sts = false: not looked at"
		return c
	}
	txts, err := in.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if errors.Is(err, dnscheck.ErrTemporary) {
		c.Status, c.Detail = dnscheck.StatusTempError, err.Error()
		c.Fix = "check that the resolvers in dns.resolvers answer; meanwhile ptrelay defers mail to " + domain
		return c
	}
	id, err := mtasts.FindRecord(txts)
	if err != nil {
		c.Status, c.Detail = dnscheck.StatusNone, domain+" publishes no MTA-STS policy ("+err.Error()+")"
		return c
	}
	_, p, err := in.Fetcher.Fetch(ctx, domain)
	if err != nil {
		c.Status, c.Detail = dnscheck.StatusFail, fmt.Sprintf("%s publishes an MTA-STS record (id %s) but its policy "+
			"cannot be fetched: %v", domain, id, err)
		c.Fix = "tell " + domain + "'s admins; until then ptrelay delivers as if there were no policy (or applies one " +
			"it fetched before)"
		return c
	}
	c.Detail = fmt.Sprintf("mode %s, id %s, max_age %s, mx %s", p.Mode, id, p.MaxAge, strings.Join(p.MX, " "))
	var unlisted []string
	if mxErr == nil {
		for _, m := range mx.MX {
			if !p.Matches(m.Host) {
				unlisted = append(unlisted, m.Host)
			}
		}
	}
	switch {
	case p.Mode == mtasts.ModeEnforce && len(unlisted) > 0 && len(unlisted) == len(mx.MX):
		c.Status = dnscheck.StatusFail
		c.Detail += "; none of the MX hosts (" + strings.Join(unlisted, " ") + ") is listed: ptrelay would defer all mail"
		c.Fix = "ask " + domain + " to fix its policy; meanwhile add [[delivery.tls_policy]] domains = [\"" + domain +
			"\"] level = \"may\", and run `ptrelay mtasts flush " + domain + "` once they have fixed it"
	case p.Mode == mtasts.ModeEnforce && len(unlisted) > 0:
		c.Status = dnscheck.StatusFail
		c.Detail += "; MX hosts not listed, never used: " + strings.Join(unlisted, " ")
		c.Fix = "ask " + domain + " to list every MX host in its policy"
	case p.Mode == mtasts.ModeEnforce:
		c.Status = dnscheck.StatusPass
		c.Detail += ": ptrelay delivers only to these hosts, over STARTTLS with a certificate valid for the MX name"
	case p.Mode == mtasts.ModeTesting:
		c.Status = dnscheck.StatusPass
		c.Detail += ": testing mode, ptrelay delivers as without a policy and logs what would fail"
	default:
		c.Status = dnscheck.StatusPass
		c.Detail += ": the policy is withdrawn"
	}
	return c
}

func checkDANE(ctx context.Context, in CheckInput, domain string, mx dnscheck.MXAnswer, mxErr error) []dnscheck.Check {
	c := dnscheck.Check{ID: "dane:" + domain, Title: "DANE of " + domain}
	switch {
	case !in.Settings.DANE:
		c.Status, c.Detail = dnscheck.StatusNone, `delivery.dane = "off": not looked at`
		return []dnscheck.Check{c}
	case !in.DANE:
		c.Status, c.Detail = dnscheck.StatusNone, "DANE is off (see the DNSSEC line): not looked at"
		return []dnscheck.Check{c}
	case mxErr != nil:
		c.Status, c.Detail = dnscheck.StatusTempError, mxErr.Error()
		return []dnscheck.Check{c}
	case !mx.Authentic:
		c.Status, c.Detail = dnscheck.StatusNone, "the MX records of "+domain+" are not DNSSEC-signed: no DANE"
		return []dnscheck.Check{c}
	}
	port := in.Port
	if port == 0 {
		port = 25
	}
	var out []dnscheck.Check
	for _, m := range mx.MX {
		hc := dnscheck.Check{ID: "dane:" + m.Host, Title: "DANE of MX host " + m.Host}
		addrs, err := in.Resolver.LookupAddrsDNSSEC(ctx, m.Host)
		if err != nil || !addrs.Authentic {
			hc.Status, hc.Detail = dnscheck.StatusNone, "its addresses are not DNSSEC-signed: no DANE"
			out = append(out, hc)
			continue
		}
		t, err := in.Resolver.LookupTLSA(ctx, m.Host, port)
		switch {
		case err != nil:
			hc.Status, hc.Detail = dnscheck.StatusFail, "TLSA lookup failed ("+err.Error()+"): ptrelay would not use this host"
			hc.Fix = "ask " + domain + "'s admins to fix the DNSSEC of " + t.Name + " (a bogus or unanswered zone)"
		case !t.Authentic || len(t.Records) == 0:
			hc.Status, hc.Detail = dnscheck.StatusNone, "no TLSA records at "+t.Name+": no DANE"
		default:
			usable := 0
			for _, r := range t.Records {
				if dane.Usable(dane.Record{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: r.Data}) {
					usable++
				}
			}
			hc.Status = dnscheck.StatusPass
			hc.Detail = fmt.Sprintf("%d TLSA record(s) at %s, %d usable: ptrelay requires STARTTLS with the "+
				"certificate they name", len(t.Records), t.Name, usable)
			if usable == 0 {
				hc.Status = dnscheck.StatusFail
				hc.Detail = fmt.Sprintf("%d TLSA record(s) at %s, none usable (SMTP uses usages 2 and 3 only): ptrelay "+
					"requires STARTTLS without checking the certificate", len(t.Records), t.Name)
				hc.Fix = "ask " + domain + "'s admins to publish DANE-EE (3 1 1) or DANE-TA (2 1 1) records"
			}
		}
		out = append(out, hc)
	}
	return out
}
