package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFreeSpace_Below(t *testing.T) {
	const total = 200 << 30 // 200 GiB
	for _, c := range []struct {
		in   FreeSpace
		want uint64
	}{
		{"10%", total / 10},
		{"0.5%", total / 200},
		{"2GB", 2_000_000_000},
		{"512MiB", 512 << 20},
		{"0", 0},
		{"0%", 0},
		{"lots", 0}, // refused by Validate; never a threshold
	} {
		if got := c.in.Below(total); got != c.want {
			t.Errorf("%q.Below(200GiB) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestWebhookKey(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, file, err string
	}{
		{"good", write("good", "whsec_"+base64.StdEncoding.EncodeToString(key)+"\n"), ""},
		{"missing", filepath.Join(dir, "nope"), "cannot be read"},
		{"no prefix", write("raw", base64.StdEncoding.EncodeToString(key)), `does not start with "whsec_"`},
		{"not base64", write("junk", "whsec_!!!"), "is not base64"},
		{"short", write("short", "whsec_"+base64.StdEncoding.EncodeToString(key[:8])), "8-byte key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.Alerts.WebhookURL = "https://hooks.example/x"
			cfg.Alerts.WebhookSecretFile = c.file
			got, err := cfg.WebhookKey()
			secrets := Refused(cfg.CheckSecrets(SecretsOptions{Daemon: true}))
			if c.err == "" {
				if err != nil || !bytes.Equal(got, key) || secrets != nil {
					t.Fatalf("key %x, err %v, CheckSecrets %v", got, err, secrets)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "openssl rand") {
				t.Fatalf("err = %v, want %q and how to make one", err, c.err)
			}
			if secrets == nil || !strings.Contains(secrets.Error(), "alerts.webhook_secret_file") {
				t.Fatalf("CheckSecrets = %v", secrets)
			}
		})
	}
}

// A chat webhook URL carries its token in the path: the printed configuration keeps the host only.
func TestRedact_WebhookURL(t *testing.T) {
	cleanEnv(t)
	cfg := Default()
	cfg.Alerts.WebhookURL = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
	var b strings.Builder
	if err := cfg.WriteRedacted(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "SECRETTOKEN") || !strings.Contains(b.String(), "https://hooks.slack.com/<redacted>") {
		t.Fatalf("printed configuration:\n%s", b.String())
	}
	if cfg.Alerts.WebhookURL != "https://hooks.slack.com/services/T000/B000/SECRETTOKEN" {
		t.Error("redaction changed the caller's configuration")
	}
}
