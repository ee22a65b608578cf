package config

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyKey copies a test key into dir with mode.
func copyKey(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/files", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestReadDKIMKey(t *testing.T) {
	dir := t.TempDir()
	pkcs1 := writeFile(t, dir, "pkcs1.pem", pkcs1PEM(t))
	for _, tc := range []struct {
		file string
		ok   func(any) bool
		err  string
	}{
		{file: "testdata/files/dkim-rsa.pem", ok: func(k any) bool { _, ok := k.(*rsa.PrivateKey); return ok }},
		{file: "testdata/files/dkim-ed25519.pem", ok: func(k any) bool { _, ok := k.(ed25519.PrivateKey); return ok }},
		{file: pkcs1, ok: func(k any) bool { _, ok := k.(*rsa.PrivateKey); return ok }},
		{file: "testdata/files/dkim-rsa1024.pem", err: "is a 1024-bit RSA key; receivers want at least 2048 bits"},
		{file: "testdata/files/dkim-ec.pem", err: "holds a *ecdsa.PrivateKey key; DKIM signs with RSA (2048 bits or more) or Ed25519"},
		{file: "testdata/files/cert.pem", err: "holds no PEM key"},
		{file: "testdata/files/missing.pem", err: "missing.pem cannot be read (open testdata/files/missing.pem: no such file"},
		{file: writeFile(t, dir, "pub.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), err: "holds a public key, not the private key"},
		{file: writeFile(t, dir, "enc.pem", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), err: "encrypted with a passphrase"},
		{file: writeFile(t, dir, "junk.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), err: "the key cannot be parsed"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			k, err := ReadDKIMKey(tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.file) {
					t.Errorf("the error %q does not name the file", err)
				}
				return
			}
			if err != nil || !tc.ok(k) {
				t.Fatalf("key %T, err %v", k, err)
			}
		})
	}
}

func pkcs1PEM(t *testing.T) string {
	t.Helper()
	k, err := ReadDKIMKey("testdata/files/dkim-rsa.pem")
	if err != nil {
		t.Fatal(err)
	}
	return rsaPKCS1(k.(*rsa.PrivateKey))
}

// Keys are checked where serve, reload and config check check secrets: a key that cannot be used refuses the
// configuration with the file and the reason; one every user may read is a warning.
func TestCheckSecrets_DKIM(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	good := copyKey(t, dir, "dkim-rsa.pem", 0o600)
	groupRead := copyKey(t, dir, "dkim-ed25519.pem", 0o640)
	worldRead := filepath.Join(dir, "world.pem")
	if err := os.WriteFile(worldRead, []byte(mustRead(t, good)), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(worldRead, 0o644)
	short := copyKey(t, dir, "dkim-rsa1024.pem", 0o600)
	for _, tc := range []struct {
		name   string
		file   string
		daemon bool
		want   string // "" : no finding
		level  slog.Level
		refuse bool
	}{
		{name: "good", file: good, daemon: true},
		{name: "group readable", file: groupRead, daemon: true},
		{name: "world readable", file: worldRead, daemon: true, level: slog.LevelWarn,
			want: "dkim.keys[1].private_key_file: " + worldRead + " has mode 0644: every user of this machine can read it and sign mail as contoso.com; make it readable by ptrelay only (chmod 600 " + worldRead},
		{name: "short RSA at start", file: short, daemon: true, level: slog.LevelError, refuse: true,
			want: "dkim.keys[1].private_key_file: " + short + " is a 1024-bit RSA key"},
		{name: "short RSA at config check", file: short, level: slog.LevelError, refuse: true,
			want: "is a 1024-bit RSA key"},
		{name: "credential seen from a shell", file: "/run/credentials/ptrelay.service/dkim.pem", level: slog.LevelInfo,
			want: "is a systemd credential (LoadCredential=): the service reads it at start"},
		{name: "missing at start", file: filepath.Join(dir, "gone.pem"), daemon: true, level: slog.LevelError, refuse: true,
			want: "gone.pem cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.DKIM.Keys = []DKIMKey{{Domain: "contoso.com", Selector: "s1", PrivateKeyFile: tc.file}}
			found := c.CheckSecrets(SecretsOptions{Daemon: tc.daemon})
			if tc.want == "" {
				if len(found) != 0 {
					t.Fatalf("findings %v, want none", found)
				}
				return
			}
			if len(found) != 1 {
				t.Fatalf("findings %v, want one", found)
			}
			f := found[0]
			if !strings.Contains(f.Msg, tc.want) || f.Level != tc.level || f.Refuse != tc.refuse {
				t.Errorf("finding %+v\nwant %q at %v, refuse %v", f, tc.want, tc.level, tc.refuse)
			}
			if err := Refused(found); (err != nil) != tc.refuse {
				t.Errorf("Refused: %v", err)
			}
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rsaPKCS1(k *rsa.PrivateKey) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}
