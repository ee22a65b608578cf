package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// PackagedCredentialFile is where the packaged systemd unit (packaging/ptrelay.service) takes the smart host
// password from: LoadCredential=smarthost:/etc/ptrelay/smarthost.pass.
const PackagedCredentialFile = "/etc/ptrelay/smarthost.pass"

// credentialsRoot is where systemd mounts a system service's credentials (/run/credentials/<unit>/), a path an
// admin may write as smtp.tls_cert or tls_key with LoadCredential=: it exists only while the service runs.
const credentialsRoot = "/run/credentials/"

// certWarnBefore is how long before its expiry a certificate is warned about (Let's Encrypt renews at 30 days).
const certWarnBefore = 30 * 24 * time.Hour

// Finding is one result of CheckSecrets, in an admin's words: the key, what is wrong and what to do.
type Finding struct {
	Key string
	Msg string // starts with the key
	// Level: Info says where a secret comes from; Warn asks for action soon; Error means mail fails until fixed.
	Level slog.Level
	// Refuse: the daemon cannot run like this; `serve` and reload refuse the configuration and `config check`
	// exits 1.
	Refuse bool
}

func (f Finding) String() string { return f.Msg }

// SecretsOptions say where CheckSecrets runs.
type SecretsOptions struct {
	// Daemon: `serve` at start or reload, with the service's credentials and rights. Otherwise an admin's shell
	// (`config check`), which has neither $CREDENTIALS_DIRECTORY nor, often, the right to read the service's
	// files: what it cannot see is said as a note or a warning, never refused.
	Daemon bool
	Now    time.Time
	// UnitCredential is the file the unit hands over as the "smarthost" credential (the password of a host named
	// "smarthost"), checked from a shell when it can be read there; "" means PackagedCredentialFile.
	UnitCredential string
}

// CheckSecrets checks what the files named by the configuration hold, beyond Validate's "it exists" (which every
// command runs, so it must not need the service's rights): that the TLS certificate and key belong together and
// when the certificate expires, and for each smart host that its password (password_file, or
// $CREDENTIALS_DIRECTORY/<name> from systemd's LoadCredential=) or OAuth client secret can be read and is not
// empty, that its service account key is one, that its client certificate and key make a pair, and how far
// client_secret_expires is.
func (c *Config) CheckSecrets(o SecretsOptions) []Finding {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.UnitCredential == "" {
		o.UnitCredential = PackagedCredentialFile
	}
	var out []Finding
	out = append(out, c.checkTLSPair(o)...)
	for i := range c.Smarthosts {
		out = append(out, c.checkSmarthostSecrets(o, idx("smarthosts", i), &c.Smarthosts[i])...)
	}
	out = append(out, c.checkAlertSecrets(o)...)
	out = append(out, c.checkDKIMSecrets(o)...)
	return out
}

// Refused returns the findings that refuse the configuration, joined as one error (nil when there are none).
func Refused(list []Finding) error {
	var errs []error
	for _, f := range list {
		if f.Refuse {
			errs = append(errs, &FieldError{Key: f.Key, Msg: f.Msg})
		}
	}
	return errors.Join(errs...)
}

func finding(level slog.Level, refuse bool, key, format string, args ...any) Finding {
	return Finding{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...), Level: level, Refuse: refuse}
}

// fromCredentials reports a path under systemd's credentials mount that this process cannot see: the service
// gets it at start.
func fromCredentials(path string) bool {
	if !strings.HasPrefix(path, credentialsRoot) {
		return false
	}
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

func (c *Config) checkTLSPair(o SecretsOptions) []Finding {
	s := &c.SMTP
	if s.TLSCert == "" || s.TLSKey == "" || strings.EqualFold(s.TLSCert, "auto") {
		return nil
	}
	if !o.Daemon {
		for _, p := range []struct{ key, path string }{{"smtp.tls_cert", s.TLSCert}, {"smtp.tls_key", s.TLSKey}} {
			if fromCredentials(p.path) {
				return []Finding{finding(slog.LevelInfo, false, p.key, "%s is a systemd credential (LoadCredential=): "+
					"the service reads it at start, where the certificate and key are checked", p.path)}
			}
		}
	}
	certPEM, err := os.ReadFile(s.TLSCert)
	if err != nil {
		return []Finding{unreadable(o, "smtp.tls_cert", s.TLSCert, err)}
	}
	keyPEM, err := os.ReadFile(s.TLSKey)
	if err != nil {
		return []Finding{unreadable(o, "smtp.tls_key", s.TLSKey, err)}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return []Finding{pairProblem(s.TLSCert, s.TLSKey, certPEM, keyPEM, err)}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return []Finding{finding(slog.LevelError, true, "smtp.tls_cert", "%s: the certificate cannot be parsed (%v): "+
			"write the PEM certificate your CA issued", s.TLSCert, err)}
	}
	return expiry(leaf, s.TLSCert, o.Now)
}

// unreadable: the daemon must read its files; an admin's shell may lack the right, and says so.
func unreadable(o SecretsOptions, key, path string, err error) Finding {
	if o.Daemon {
		return finding(slog.LevelError, true, key, "%s cannot be read (%v): make it readable by the service "+
			"(with DynamicUser=, hand it over with LoadCredential=; see docs/install.md)", path, unwrapPath(err))
	}
	return finding(slog.LevelWarn, false, key, "%s cannot be read from this shell (%v), so the certificate and "+
		"key were not checked: run `ptrelay config check` as root", path, unwrapPath(err))
}

// pairProblem explains why a certificate and key do not make a pair: swapped, not PEM, or not belonging together.
func pairProblem(certPath, keyPath string, certPEM, keyPEM []byte, err error) Finding {
	key := "smtp.tls_cert"
	if _, swapErr := tls.X509KeyPair(keyPEM, certPEM); swapErr == nil {
		return finding(slog.LevelError, true, key, "%s holds the private key and smtp.tls_key %s the certificate: "+
			"swap the two paths", certPath, keyPath)
	}
	switch {
	case !bytes.Contains(certPEM, []byte("-----BEGIN CERTIFICATE-----")):
		return finding(slog.LevelError, true, key, "%s holds no PEM certificate (no \"BEGIN CERTIFICATE\" line): "+
			"write the certificate (full chain, PEM) there", certPath)
	case !bytes.Contains(keyPEM, []byte("PRIVATE KEY-----")):
		return finding(slog.LevelError, true, "smtp.tls_key", "%s holds no PEM private key (no \"BEGIN ... PRIVATE "+
			"KEY\" line): write the certificate's private key there", keyPath)
	case strings.Contains(err.Error(), "does not match"):
		return finding(slog.LevelError, true, key, "%s and smtp.tls_key %s do not belong together (the key is not "+
			"the certificate's): name the key the certificate was issued for, or the certificate of this key",
			certPath, keyPath)
	}
	return finding(slog.LevelError, true, key, "%s and smtp.tls_key %s do not make a certificate pair (%v): "+
		"write the PEM certificate and its private key", certPath, keyPath, err)
}

// expiry warns about a certificate that has expired or expires within certWarnBefore. Clients that verify
// certificates refuse an expired one; Exchange's opportunistic TLS falls back to plaintext or queues the mail.
func expiry(leaf *x509.Certificate, path string, now time.Time) []Finding {
	left := leaf.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return []Finding{finding(slog.LevelError, false, "smtp.tls_cert", "%s expired on %s: clients that verify "+
			"certificates refuse STARTTLS; renew it, then reload ptrelay (systemctl reload ptrelay)",
			path, leaf.NotAfter.UTC().Format(time.DateOnly))}
	case left < certWarnBefore:
		return []Finding{finding(slog.LevelWarn, false, "smtp.tls_cert", "%s expires on %s, in %d days: renew "+
			"it, then reload ptrelay (systemctl reload ptrelay)", path, leaf.NotAfter.UTC().Format(time.DateOnly),
			int(left.Hours()/24))}
	case now.Before(leaf.NotBefore):
		return []Finding{finding(slog.LevelWarn, false, "smtp.tls_cert", "%s is valid only from %s: check the "+
			"machine's clock, or wait", path, leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	return nil
}
