package selfcheck

import (
	"context"
	"os"
	"slices"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/relay/delivery"
)

// checkSmarthosts is `ptrelay check`'s line per smart host: the host is reached and logged in to as a delivery
// would (resolve, connect, TLS, EHLO, AUTH with a token fetched for XOAUTH2, QUIT; no mail is sent), and the
// sending domain's SPF record authorises it (when domain is known).
func checkSmarthosts(ctx context.Context, cfg *config.Config, res *dnscheck.Resolver, domain string) []dnscheck.Check {
	var out []dnscheck.Check
	st := delivery.NewSettings(withUnitCredential(cfg))
	spf := map[string]bool{} // one SPF line per host name, however many entries use it
	for i := range st.Smarthosts {
		h := &st.Smarthosts[i]
		out = append(out, delivery.ProbeSmarthost(ctx, h, delivery.ProbeOptions{Resolver: res, Hostname: cfg.Hostname,
			Bind: cfg.Delivery.Bind, Timeout: 30 * time.Second}))
		if domain != "" && !spf[h.Host] {
			spf[h.Host] = true
			out = append(out, dnscheck.CheckSPFHost(ctx, res, domain, h.Host))
		}
	}
	return out
}

// withUnitCredential lets `ptrelay check`, run from an admin's shell where systemd's $CREDENTIALS_DIRECTORY does
// not exist, log in to the smart host named "smarthost" with the file the shipped unit hands over as that
// credential (config.PackagedCredentialFile), as the service would.
func withUnitCredential(cfg *config.Config) *config.Config {
	if os.Getenv("CREDENTIALS_DIRECTORY") != "" {
		return cfg
	}
	c := *cfg
	c.Smarthosts = slices.Clone(cfg.Smarthosts)
	for i := range c.Smarthosts {
		h := &c.Smarthosts[i]
		if h.UsesPassword() && h.PasswordFile == "" && h.PasswordCredential() == "smarthost" {
			h.PasswordFile = config.PackagedCredentialFile
		}
	}
	return &c
}
