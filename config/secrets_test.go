package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var secretsNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// pemPair writes a self-signed certificate valid from notBefore to notAfter and its key; it returns both paths.
func pemPair(t *testing.T, dir, name string, notBefore, notAfter time.Time) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.test"},
		DNSNames: []string{"relay.test"}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	k := writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return cert, k
}

func tlsConfig(cert, key string) *Config {
	c := Default()
	c.SMTP.TLSCert, c.SMTP.TLSKey = cert, key
	return c
}

// The certificate and key are checked where the admin runs `config check`, as serve and reload check them: a
// pair that does not match is refused in both places; expiry is warned about.
func TestCheckSecrets_TLSPair(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	year := secretsNow.AddDate(1, 0, 0)
	goodCert, goodKey := pemPair(t, dir, "good", secretsNow.AddDate(0, -1, 0), year)
	_, otherKey := pemPair(t, dir, "other", secretsNow.AddDate(0, -1, 0), year)
	oldCert, oldKey := pemPair(t, dir, "old", secretsNow.AddDate(-1, 0, 0), secretsNow.AddDate(0, 0, -3))
	soonCert, soonKey := pemPair(t, dir, "soon", secretsNow.AddDate(0, -2, 0), secretsNow.Add(10*24*time.Hour+time.Hour))
	notPEM := writeFile(t, dir, "cert.der", "not a certificate")
	for _, tc := range []struct {
		name      string
		cert, key string
		refuse    bool
		level     slog.Level
		want      string // in the message; "" = no finding at all
	}{
		{"matching pair", goodCert, goodKey, false, 0, ""},
		{"swapped", goodKey, goodCert, true, slog.LevelError, "swap the two paths"},
		{"key of another certificate", goodCert, otherKey, true, slog.LevelError, "do not belong together"},
		{"not PEM", notPEM, goodKey, true, slog.LevelError, "holds no PEM certificate"},
		{"key file is a certificate", goodCert, oldCert, true, slog.LevelError, "holds no PEM private key"},
		{"expired", oldCert, oldKey, false, slog.LevelError, "expired on " + secretsNow.AddDate(0, 0, -3).Format(time.DateOnly)},
		{"expires within 30 days", soonCert, soonKey, false, slog.LevelWarn, "in 10 days: renew it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsConfig(tc.cert, tc.key)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate (every command runs it) must not read the files' content: %v", err)
			}
			for _, daemon := range []bool{false, true} {
				found := c.CheckSecrets(SecretsOptions{Daemon: daemon, Now: secretsNow, UnitCredential: filepath.Join(dir, "none")})
				if tc.want == "" {
					if len(found) != 0 {
						t.Errorf("daemon=%v: %v", daemon, found)
					}
					continue
				}
				if len(found) != 1 || found[0].Refuse != tc.refuse || found[0].Level != tc.level || !strings.Contains(found[0].Msg, tc.want) {
					t.Errorf("daemon=%v: %+v, want one finding (refuse %v, level %v) with %q", daemon, found, tc.refuse, tc.level, tc.want)
				}
				if (Refused(found) != nil) != tc.refuse {
					t.Errorf("Refused = %v", Refused(found))
				}
			}
		})
	}
}

// With DynamicUser the service cannot read a root-only key; the documented recipe hands it over with
// LoadCredential= and names /run/credentials/ptrelay.service/... An admin's shell, where that path does not
// exist while the service is stopped, must still load the configuration, and is told where the file comes from.
func TestCheckSecrets_TLSFromCredentials(t *testing.T) {
	cleanEnv(t)
	c := tlsConfig("/run/credentials/ptrelay-test-none.service/tls.crt", "/run/credentials/ptrelay-test-none.service/tls.key")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate in a shell: %v", err)
	}
	found := c.CheckSecrets(SecretsOptions{Now: secretsNow})
	if len(found) != 1 || found[0].Level != slog.LevelInfo || !strings.Contains(found[0].Msg, "LoadCredential=") {
		t.Errorf("shell: %+v", found)
	}
	found = c.CheckSecrets(SecretsOptions{Daemon: true, Now: secretsNow})
	if Refused(found) == nil || !strings.Contains(found[0].Msg, "LoadCredential=") {
		t.Errorf("the daemon must refuse a credential it does not have: %+v", found)
	}
}

func TestCheckSecrets_Password(t *testing.T) {
	const base = "[[smarthosts]]\nname = \"smarthost\"\naddress = \"smtp.isp.example:587\"\nusername = \"relay\"\n"
	dir := t.TempDir()
	n := 0
	withFile := func(content string) *Config {
		n++
		c, err := Parse([]byte(base+"password_file = "+quote(writeFile(t, dir, fmt.Sprint("pass", n), content))+"\n"), "t.toml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	viaCreds, err := Parse([]byte(base), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		level  slog.Level
		refuse bool
		text   string
	}
	for _, tc := range []struct {
		name   string
		cfg    *Config
		daemon bool
		creds  string // content of $CREDENTIALS_DIRECTORY/smarthost; "-" = no $CREDENTIALS_DIRECTORY
		unit   string // content of the unit's credential source; "-" = missing
		want   []want
	}{
		{"file with a password", withFile("secret\n"), true, "-", "-", nil},
		{"empty file, daemon: loud, not refused", withFile("\n"), true, "-", "-",
			[]want{{slog.LevelError, false, "is empty: mail for the smart host waits"}}},
		{"empty file, shell", withFile(""), false, "-", "-", []want{{slog.LevelError, false, "is empty"}}},
		// The unit's SetCredential=smarthost:\n fallback: the service starts with an empty password.
		{"empty credential, daemon", viaCreds, true, "\n", "-",
			[]want{{slog.LevelError, false, "write the password into " + PackagedCredentialFile}}},
		{"credential, daemon", viaCreds, true, "secret\n", "-", nil},
		{"no credentials directory, daemon", viaCreds, true, "-", "-",
			[]want{{slog.LevelError, true, "is empty and there is no password"}}},
		// An admin's shell: no credentials; the note says once where the password comes from, and the unit's
		// source file is checked when it can be read.
		{"shell, unit file has the password", viaCreds, false, "-", "secret\n",
			[]want{{slog.LevelInfo, false, "LoadCredential=smarthost:"}}},
		{"shell, unit file empty", viaCreds, false, "-", "\n",
			[]want{{slog.LevelInfo, false, "LoadCredential=smarthost:"}, {slog.LevelError, false, "smarthost.pass is empty"}}},
		{"shell, unit file missing", viaCreds, false, "-", "-",
			[]want{{slog.LevelInfo, false, "LoadCredential=smarthost:"}, {slog.LevelError, false, "does not exist: write the smart host password into it"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			if tc.creds != "-" {
				creds := t.TempDir()
				writeFile(t, creds, "smarthost", tc.creds)
				t.Setenv("CREDENTIALS_DIRECTORY", creds)
			}
			unit := filepath.Join(t.TempDir(), "smarthost.pass")
			if tc.unit != "-" {
				writeFile(t, filepath.Dir(unit), "smarthost.pass", tc.unit)
			}
			found := tc.cfg.CheckSecrets(SecretsOptions{Daemon: tc.daemon, Now: secretsNow, UnitCredential: unit})
			if len(found) != len(tc.want) {
				t.Fatalf("found %+v, want %d findings", found, len(tc.want))
			}
			for i, w := range tc.want {
				f := found[i]
				if f.Level != w.level || f.Refuse != w.refuse || !strings.Contains(f.Msg, w.text) {
					t.Errorf("finding %d: %+v, want level %v refuse %v with %q", i, f, w.level, w.refuse, w.text)
				}
			}
		})
	}
	cleanEnv(t)
	if found := (&Config{}).CheckSecrets(SecretsOptions{Daemon: true}); len(found) != 0 {
		t.Errorf("no smart host needs no secret: %v", found)
	}
	missing, err := Parse([]byte(base+"password_file = \"/nonexistent/ptrelay/pass\"\n"), "t.toml")
	if err != nil {
		t.Fatalf("an unreadable password file is the daemon's problem, not the file's: %v", err)
	}
	if err := Refused(missing.CheckSecrets(SecretsOptions{Daemon: true})); err == nil || !strings.Contains(err.Error(), "smarthosts[1].password_file: /nonexistent/ptrelay/pass cannot be read") {
		t.Errorf("daemon with a missing password file: %v", err)
	}
	if found := missing.CheckSecrets(SecretsOptions{}); Refused(found) != nil || len(found) != 1 || found[0].Level != slog.LevelWarn {
		t.Errorf("shell with a missing password file: %+v", found)
	}
}

func quote(s string) string { return "\"" + s + "\"" }
