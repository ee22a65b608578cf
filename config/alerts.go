package config

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Alerts is [alerts]: who is told when something needs the admin, how, and the thresholds. Without mail_to and
// webhook_url, the conditions are still tracked (status, `ptrelay alerts list`, logs and metrics).
type Alerts struct {
	MailTo            []string  `toml:"mail_to"`
	MailVia           string    `toml:"mail_via"` // host:port of the internal mail server; "": through the queue
	WebhookURL        string    `toml:"webhook_url"`
	WebhookSecretFile string    `toml:"webhook_secret_file"` // "whsec_<base64>"; "": unsigned
	MinSeverity       string    `toml:"min_severity"`        // info | warn | crit
	Hold              Duration  `toml:"hold"`
	Repeat            Duration  `toml:"repeat"` // 0: no reminders
	Digest            string    `toml:"digest"` // off | daily | weekly
	QueueOldest       Duration  `toml:"queue_oldest"`
	QueueDeferred     int       `toml:"queue_deferred"`
	DiskFree          FreeSpace `toml:"disk_free"`
}

// FreeSpace is a free-space threshold as written: a share of the file system ("10%") or an amount ("2GB");
// "0" disables. Validate checks it; Below reads it.
type FreeSpace string

// parseFreeSpace reads "10%", "0.5%", "2GB" or "0" into a share or a byte count.
func parseFreeSpace(s string) (percent float64, bytes Size, err error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return 0, 0, fmt.Errorf("%q is not a share below 100%%: write e.g. \"10%%\", or a size such as \"2GB\"", s)
		}
		return v, 0, nil
	}
	if t == "0" {
		return 0, 0, nil
	}
	n, err := ParseSize(t)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is neither a share nor a size: write e.g. \"10%%\" or \"2GB\", or \"0\" for no check", s)
	}
	return 0, n, nil
}

// Below returns the free bytes under which a file system of total bytes counts as low; 0 when disabled.
func (f FreeSpace) Below(total uint64) uint64 {
	p, n, err := parseFreeSpace(string(f))
	if err != nil {
		return 0
	}
	if p > 0 {
		return uint64(float64(total) * p / 100)
	}
	return uint64(n)
}

func (c *Config) checkAlerts(k *checker) {
	a := &c.Alerts
	for i, to := range a.MailTo {
		if addr, err := mail.ParseAddress(to); err != nil || addr.Address != to || !strings.Contains(to, "@") {
			k.add(idx("alerts.mail_to", i), "%q is not a mail address: write a plain address such as \"it@contoso.com\"", to)
		}
	}
	if a.MailVia != "" {
		if why := checkHostPort(a.MailVia, false); why != "" {
			k.add("alerts.mail_via", "%q %s: write your internal mail server's host:port, e.g. \"192.168.1.10:25\", "+
				"or \"\" to send alert mail through ptrelay's own queue", a.MailVia, why)
		} else if len(a.MailTo) == 0 {
			k.add("alerts.mail_via", "is set but alerts.mail_to is empty: list who gets the alert mail, e.g. [\"it@contoso.com\"]")
		}
	}
	if a.WebhookURL != "" {
		u, err := url.Parse(a.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			k.add("alerts.webhook_url", "is not an http(s) URL: write the receiver's address, e.g. \"https://hooks.example.com/ptrelay\"")
		}
	}
	if a.WebhookSecretFile != "" && a.WebhookURL == "" {
		k.add("alerts.webhook_secret_file", "is set but alerts.webhook_url is empty: set the URL the notices go to, or remove webhook_secret_file")
	}
	switch a.MinSeverity {
	case "info", "warn", "crit":
	default:
		k.add("alerts.min_severity", "%q is not a choice: write \"info\", \"warn\" or \"crit\"", a.MinSeverity)
	}
	switch a.Digest {
	case "off", "daily", "weekly":
	default:
		k.add("alerts.digest", "%q is not a choice: write \"off\", \"daily\" or \"weekly\"", a.Digest)
	}
	if a.QueueOldest <= 0 {
		k.add("alerts.queue_oldest", "must be positive: write a duration such as \"2h\"")
	}
	if _, _, err := parseFreeSpace(string(a.DiskFree)); err != nil {
		k.add("alerts.disk_free", "%v", err)
	}
	if a.QueueDeferred <= 0 {
		k.add("alerts.queue_deferred", "must be positive: write a number of recipients such as 50")
	}
}

// checkAlertSecrets is CheckSecrets' part for [alerts]: the webhook secret. The daemon refuses a secret it
// cannot read or use; an admin's shell may lack the right to read it, so there it is a warning.
func (c *Config) checkAlertSecrets(o SecretsOptions) []Finding {
	if c.Alerts.WebhookSecretFile == "" {
		return nil
	}
	if _, err := c.WebhookKey(); err != nil {
		if o.Daemon {
			return []Finding{finding(slog.LevelError, true, "alerts.webhook_secret_file", "%v", err)}
		}
		return []Finding{finding(slog.LevelWarn, false, "alerts.webhook_secret_file", "%v", err)}
	}
	return nil
}

// webhookSecretHint says how to make a secret.
const webhookSecretHint = `make one with: echo "whsec_$(openssl rand -base64 32)" > FILE; chmod 600 FILE`

// WebhookKey reads alerts.webhook_secret_file: a Standard Webhooks secret, "whsec_" followed by the base64 of
// a 24 to 64 byte key, and returns the key; nil when no file is set.
func (c *Config) WebhookKey() ([]byte, error) {
	p := c.Alerts.WebhookSecretFile
	if p == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cannot be read (%v): %s", unwrapPath(err), webhookSecretHint)
	}
	s := strings.TrimSpace(string(b))
	rest, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, fmt.Errorf("%s does not start with \"whsec_\": %s", p, webhookSecretHint)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%s: the part after \"whsec_\" is not base64: %s", p, webhookSecretHint)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("%s holds a %d-byte key; Standard Webhooks asks for 24 to 64 bytes: %s", p, len(key), webhookSecretHint)
	}
	return key, nil
}

// redactWebhookURL keeps the scheme and host of a webhook URL: chat services put their token in the path.
func redactWebhookURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexAny(u[i+3:], "/?#"); j >= 0 && len(u) > i+3+j+1 {
			return u[:i+3+j] + "/" + Redacted
		}
	}
	return u
}
