package config

import (
	"bytes"
	"io"
	"slices"

	toml "github.com/pelletier/go-toml/v2"
)

// Redacted replaces every secret in the printed configuration.
const Redacted = "<redacted>"

// WriteRedacted prints the effective configuration as TOML, in the order of docs/configuration.md, for
// `ptrelay config check` and the start-up log. Secrets are replaced by "<redacted>": the only secrets a
// configuration holds are the users' password hashes (smart host passwords and OAuth client secrets are never in
// it, only the paths of their files). Values are the effective ones: routing.mode and admin.socket show what ptrelay will use, sizes and
// durations print with their units ("35MB", "5d"). The output is a valid configuration file, apart from the
// redacted hashes.
func (c *Config) WriteRedacted(w io.Writer) error {
	b, err := c.marshal(true)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// marshal renders the effective configuration; redact=false serves the round-trip tests.
func (c *Config) marshal(redact bool) ([]byte, error) {
	e := c.effective()
	if redact {
		e.Alerts.WebhookURL = redactWebhookURL(e.Alerts.WebhookURL)
		for i := range e.SMTP.Users {
			if e.SMTP.Users[i].PasswordHash != "" {
				e.SMTP.Users[i].PasswordHash = Redacted
			}
		}
		for i := range e.Web.Users {
			if e.Web.Users[i].PasswordHash != "" {
				e.Web.Users[i].PasswordHash = Redacted
			}
		}
	}
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	enc.EnableMarshalerInterface() // AutoBool prints true and false bare
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// effective returns a deep copy with the defaults that depend on other keys resolved, so that what is printed is
// what runs, and so that changing the copy cannot reach the caller's configuration.
func (c *Config) effective() *Config {
	e := *c
	e.SMTP.Listen = slices.Clone(c.SMTP.Listen)
	e.SMTP.AllowedNetworks = slices.Clone(c.SMTP.AllowedNetworks)
	e.SMTP.TLSNames = slices.Clone(c.SMTP.TLSNames)
	e.SMTP.Users = slices.Clone(c.SMTP.Users)
	e.Smarthosts = nil
	for _, s := range c.Smarthosts {
		s.MessageRate, s.RecipientRate = slices.Clone(s.MessageRate), slices.Clone(s.RecipientRate)
		s.Senders = slices.Clone(s.Senders)
		if s.OAuth2.empty() {
			s.OAuth2 = nil // nothing to print
		} else {
			o := *s.OAuth2
			o.Scopes = slices.Clone(o.Scopes)
			s.OAuth2 = &o
		}
		e.Smarthosts = append(e.Smarthosts, s)
	}
	e.Routing.Rules = make([]Rule, len(c.Routing.Rules))
	for i, r := range c.Routing.Rules {
		e.Routing.Rules[i] = Rule{Domains: slices.Clone(r.Domains), Senders: slices.Clone(r.Senders), Via: r.Via}
	}
	if c.Routing.Rules == nil {
		e.Routing.Rules = nil
	}
	e.DNS.Resolvers = slices.Clone(c.DNS.Resolvers)
	e.Egress.Discovery = slices.Clone(c.Egress.Discovery)
	e.Egress.Whoami = slices.Clone(c.Egress.Whoami)
	e.Egress.DNSBL = slices.Clone(c.Egress.DNSBL)
	e.Alerts.MailTo = slices.Clone(c.Alerts.MailTo)
	e.Web.Users = slices.Clone(c.Web.Users)
	e.DKIM.Oversign = slices.Clone(c.DKIM.Oversign)
	e.DKIM.Keys = slices.Clone(c.DKIM.Keys)
	e.Routing.Mode = c.EffectiveRoutingMode()
	e.Admin.Socket = c.AdminSocket()
	return &e
}
