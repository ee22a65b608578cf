package dkim

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"ptrelay/dnscheck"
)

// DMARC is a domain's DMARC record as `ptrelay check` reads it (RFC 7489 6.3).
type DMARC struct {
	Name   string // where it was found: "_dmarc.example.com", or the organizational domain's
	Policy string // p=: none, quarantine or reject
	ADKIM  string // adkim=: "r" (relaxed, the default) or "s" (strict)
}

// CheckDMARC is the DMARC line of `ptrelay check` for domain: is a record published (at _dmarc.domain, else at
// the organizational domain, as receivers look it up), its policy, and whether mail ptrelay signs for domain
// aligns (d= is the From: domain itself, so it aligns in relaxed and strict mode alike). Gmail and Yahoo require a
// DMARC record of bulk senders since 2024.
func (s *Signer) CheckDMARC(ctx context.Context, res dnscheck.Lookuper, domain string) dnscheck.Check {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	c := dnscheck.Check{ID: "dmarc:" + domain, Title: "DMARC of " + domain}
	signed := len(s.KeysFor(domain)) > 0
	enable := "enable DKIM for " + domain + " (`ptrelay dkim keygen`, then [[dkim.keys]]; `ptrelay check` shows the rest)"
	rec, err := lookupDMARC(ctx, res, domain)
	var multi *multipleError
	switch {
	case errors.Is(err, dnscheck.ErrTemporary):
		c.Status = dnscheck.StatusTempError
		c.Detail = "the DNS lookup of _dmarc." + domain + " did not finish: " + err.Error()
		c.Fix = "run the check again"
		return c
	case errors.As(err, &multi):
		c.Status, c.Blocking = dnscheck.StatusFail, true
		c.Detail = fmt.Sprintf("%d DMARC records at %s: receivers then apply no DMARC policy at all (RFC 7489 6.6.3)", multi.n, multi.name)
		c.Fix = "delete all but one of the TXT records starting with v=DMARC1 at " + multi.name
		return c
	case err != nil:
		c.Status, c.Blocking = dnscheck.StatusFail, true
		c.Detail = err.Error()
		c.Fix = "publish one record such as _dmarc." + domain + ` TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@` + domain + `"`
		return c
	case rec == nil:
		c.Status = dnscheck.StatusFail
		c.Detail = "no DMARC record at _dmarc." + domain + ": Gmail and Yahoo require one of bulk senders"
		c.Fix = "publish _dmarc." + domain + ` TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@` + domain + `"` +
			", read the reports, then raise p= to quarantine once all your mail passes"
		if !signed {
			c.Fix += "; and " + enable
		}
		return c
	}
	c.Detail = "p=" + rec.Policy + " (" + rec.Name + ")"
	if !signed {
		c.Status = dnscheck.StatusFail
		c.Detail += "; mail from " + domain + " is not signed by ptrelay, so it passes DMARC only through SPF, " +
			"which a relay on a dynamic address or behind a smart host cannot keep right"
		c.Fix = enable
		return c
	}
	c.Status = dnscheck.StatusPass
	mode := "relaxed"
	if rec.ADKIM == "s" {
		mode = "strict"
	}
	c.Detail += "; mail ptrelay signs for " + domain + " (d=" + domain + ") aligns with its From: (adkim " + mode + ")"
	return c
}

type multipleError struct {
	name string
	n    int
}

func (e *multipleError) Error() string { return fmt.Sprintf("%d DMARC records at %s", e.n, e.name) }

// lookupDMARC finds the DMARC record of domain: _dmarc.domain, else _dmarc of its organizational domain
// (approximated by its last two labels: ptrelay carries no public suffix list). nil when there is none.
func lookupDMARC(ctx context.Context, res dnscheck.Lookuper, domain string) (*DMARC, error) {
	names := []string{"_dmarc." + domain}
	if labels := strings.Split(domain, "."); len(labels) > 2 {
		names = append(names, "_dmarc."+strings.Join(labels[len(labels)-2:], "."))
	}
	for _, name := range names {
		txts, err := res.LookupTXT(ctx, name)
		if err != nil && !errors.Is(err, dnscheck.ErrNXDomain) {
			return nil, err
		}
		var recs []string
		for _, t := range txts {
			// RFC 7489 6.6.3: records that do not start with v=DMARC1 are ignored.
			if v, _, _ := strings.Cut(t, ";"); strings.EqualFold(strings.ReplaceAll(v, " ", ""), "v=DMARC1") {
				recs = append(recs, t)
			}
		}
		switch {
		case len(recs) > 1:
			return nil, &multipleError{name: name, n: len(recs)}
		case len(recs) == 0:
			continue
		}
		tags, err := parseTags(recs[0])
		p := strings.ToLower(tags["p"])
		if err != nil || p != "none" && p != "quarantine" && p != "reject" {
			return nil, fmt.Errorf("the DMARC record at %s has no valid p= (none, quarantine or reject): %s", name, clip(recs[0], 80))
		}
		if sp := strings.ToLower(tags["sp"]); name != names[0] && (sp == "none" || sp == "quarantine" || sp == "reject") {
			p = sp // the organizational domain's policy for its subdomains
		}
		return &DMARC{Name: name, Policy: p, ADKIM: strings.ToLower(tags["adkim"])}, nil
	}
	return nil, nil
}
