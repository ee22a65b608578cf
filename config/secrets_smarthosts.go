package config

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// secretWarnBefore is how long before client_secret_expires CheckSecrets warns (the alert's first stage).
const secretWarnBefore = certWarnBefore

// secret is one secret a smart host needs, for the findings' words.
type secret struct {
	what       string // "password", "OAuth client secret"
	key        string // the key that names its file: "smarthosts[1].password_file"
	file       string // that key's value; "": from systemd's credential
	credential string // the credential's name, read from $CREDENTIALS_DIRECTORY
	// unitFile is the file the shipped unit hands over as credential, "" when the unit does not name it (only
	// "smarthost" is in the shipped unit).
	unitFile string
}

func (c *Config) checkSmarthostSecrets(o SecretsOptions, key string, s *Smarthost) []Finding {
	var out []Finding
	if s.UsesPassword() {
		sec := secret{what: "password", key: key + ".password_file", file: s.PasswordFile, credential: s.PasswordCredential()}
		if sec.credential == credentialName {
			sec.unitFile = o.UnitCredential
		}
		out = append(out, sec.check(o, key)...)
	}
	if s.Auth == AuthXOAUTH2 && s.OAuth2 != nil {
		if s.OAuth2.Provider == ProviderGoogle {
			out = append(out, serviceAccountFinding(o, key+".oauth2.service_account_file", s.OAuth2.ServiceAccountFile)...)
		} else {
			sec := secret{what: "OAuth client secret", key: key + ".oauth2.client_secret_file",
				file: s.OAuth2.ClientSecretFile, credential: s.SecretCredential()}
			out = append(out, sec.check(o, key)...)
		}
		if exp, err := s.OAuth2.SecretExpires(); err == nil && !exp.IsZero() {
			k := key + ".oauth2.client_secret_expires"
			switch left := exp.Sub(o.Now); {
			case left <= 0:
				out = append(out, finding(slog.LevelError, false, k, "the client secret of smart host %s expired on "+
					"%s: logins fail until you create a new secret, write it to the secret file and set the new date",
					s.Name, s.OAuth2.ClientSecretExpires))
			case left < secretWarnBefore:
				out = append(out, finding(slog.LevelWarn, false, k, "the client secret of smart host %s expires on %s, "+
					"in %d days: create a new secret in the app registration, write it to the secret file and set the "+
					"new date", s.Name, s.OAuth2.ClientSecretExpires, int(left.Hours()/24)))
			}
		}
	}
	if s.TLSClientCert != "" && s.TLSClientKey != "" {
		out = append(out, clientPairFinding(o, key, s)...)
	}
	return out
}

// check finds the secret: in its file, or as a systemd credential (in the daemon), or, from a shell, in the file
// the unit hands over when there is one.
func (sec secret) check(o SecretsOptions, hostKey string) []Finding {
	if sec.file != "" {
		return sec.in(o, sec.key, sec.file, "")
	}
	load := "LoadCredential=" + sec.credential + ":FILE"
	d := os.Getenv("CREDENTIALS_DIRECTORY")
	if d == "" {
		if o.Daemon {
			return []Finding{finding(slog.LevelError, true, sec.key, "is empty and there is no %s: set it, or pass "+
				"the %s with systemd's %s", sec.what, sec.what, load)}
		}
		if sec.unitFile == "" {
			return []Finding{finding(slog.LevelInfo, false, sec.key, "is empty: the service reads the %s from "+
				"systemd's credential %q, which the unit must hand over (add %s with systemctl edit ptrelay)",
				sec.what, sec.credential, load)}
		}
		note := finding(slog.LevelInfo, false, sec.key, "is empty: the service reads the %s from systemd's "+
			"credential %q, which the packaged unit fills from %s (LoadCredential=%s:%s)", sec.what, sec.credential,
			sec.unitFile, sec.credential, sec.unitFile)
		if _, err := os.Stat(sec.unitFile); errors.Is(err, fs.ErrNotExist) {
			return []Finding{note, finding(slog.LevelError, false, sec.key, "%s does not exist: write the smart host "+
				"%s into it (chmod 600), then restart ptrelay", sec.unitFile, sec.what)}
		}
		return append([]Finding{note}, sec.in(o, sec.key, sec.unitFile, sec.unitFile)...)
	}
	p := filepath.Join(d, sec.credential)
	if _, err := os.Stat(p); err != nil {
		return []Finding{finding(slog.LevelError, true, sec.key, "is empty and $CREDENTIALS_DIRECTORY has no %q "+
			"credential: add %s to the unit, or set %s", sec.credential, load, sec.key)}
	}
	where := "the file its LoadCredential= line names"
	if sec.unitFile != "" {
		where = PackagedCredentialFile // the daemon runs under the shipped unit, which names this file
	}
	return sec.in(o, sec.key, p, where)
}

// in checks that file holds the secret. where is the file an admin edits when that is not file itself (the
// source of a systemd credential).
func (sec secret) in(o SecretsOptions, key, file, where string) []Finding {
	b, err := os.ReadFile(file)
	if err != nil {
		if o.Daemon {
			return []Finding{finding(slog.LevelError, true, key, "%s cannot be read (%v): create it with the "+
				"%s on one line, readable by ptrelay only (chmod 600)", file, unwrapPath(err), sec.what)}
		}
		return []Finding{finding(slog.LevelWarn, false, key, "%s cannot be read from this shell (%v): the service "+
			"must be able to read it (run `ptrelay config check` as root to check its content)", file, unwrapPath(err))}
	}
	if strings.TrimRight(string(b), "\r\n") != "" {
		return nil
	}
	if where == "" || where == file {
		return []Finding{finding(slog.LevelError, false, key, "the smart host %s file %s is empty: mail for the "+
			"smart host waits in the queue until you write the %s into it and reload ptrelay", sec.what, file, sec.what)}
	}
	return []Finding{finding(slog.LevelError, false, key, "the smart host %s is empty (%s, handed over by "+
		"systemd): mail for the smart host waits in the queue until you write the %s into %s (or set %s) and "+
		"restart ptrelay", sec.what, file, sec.what, where, sec.key)}
}

// ServiceAccount is what ptrelay reads of a Google service account's JSON key: the fields the JWT bearer grant
// needs. The other fields of the file are ignored.
type ServiceAccount struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// ReadServiceAccount reads a service account's JSON key and checks the fields the token request needs.
func ReadServiceAccount(path string) (*ServiceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, errors.New("not a JSON key file (" + err.Error() + "): download the key again (Cloud console, " +
			"IAM, Service accounts, Keys, Add key, JSON)")
	}
	switch {
	case sa.Type != "service_account":
		return nil, errors.New("its type is " + quoteOr(sa.Type, "missing") + ", not \"service_account\": use the " +
			"JSON key of a service account")
	case sa.ClientEmail == "" || !strings.Contains(sa.PrivateKey, "PRIVATE KEY"):
		return nil, errors.New("it lacks client_email or private_key: download the service account's JSON key again")
	}
	return &sa, nil
}

func quoteOr(s, empty string) string {
	if s == "" {
		return empty
	}
	return "\"" + s + "\""
}

func serviceAccountFinding(o SecretsOptions, key, path string) []Finding {
	if path == "" {
		return nil
	}
	_, err := ReadServiceAccount(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist):
		if o.Daemon {
			return []Finding{finding(slog.LevelError, true, key, "%s cannot be read (%v): make it readable by the "+
				"service only (chmod 600)", path, unwrapPath(err))}
		}
		return []Finding{finding(slog.LevelWarn, false, key, "%s cannot be read from this shell (%v): run `ptrelay "+
			"config check` as root to check it", path, unwrapPath(err))}
	}
	return []Finding{finding(slog.LevelError, true, key, "%s: %v", path, err)}
}

// clientPairFinding checks that a smart host's client certificate and key make a pair.
func clientPairFinding(o SecretsOptions, key string, s *Smarthost) []Finding {
	certPEM, err := os.ReadFile(s.TLSClientCert)
	if err == nil {
		var keyPEM []byte
		if keyPEM, err = os.ReadFile(s.TLSClientKey); err == nil {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				return []Finding{finding(slog.LevelError, true, key+".tls_client_cert", "%s and tls_client_key %s do "+
					"not make a certificate pair (%v): write the PEM certificate and its private key",
					s.TLSClientCert, s.TLSClientKey, err)}
			}
			return nil
		}
	}
	if o.Daemon {
		return []Finding{finding(slog.LevelError, true, key+".tls_client_cert", "the client certificate or key "+
			"cannot be read (%v): make both readable by the service", unwrapPath(err))}
	}
	return []Finding{finding(slog.LevelWarn, false, key+".tls_client_cert", "the client certificate or key "+
		"cannot be read from this shell (%v): run `ptrelay config check` as root to check them", unwrapPath(err))}
}
