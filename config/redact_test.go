package config

import (
	"bytes"
	"strings"
	"testing"
)

const testHash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

// assertRoundTrip checks that the printed configuration is a configuration file that reads back to the same
// settings: print, parse, print again, and compare.
func assertRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	first, err := c.marshal(false)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	back, err := Parse(first, "printed.toml")
	if err != nil {
		t.Fatalf("the printed configuration does not parse: %v\n%s", err, first)
	}
	second, err := back.marshal(false)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("printing is not stable:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
}

func TestWriteRedacted(t *testing.T) {
	cleanEnv(t)
	c, err := Parse([]byte(`
hostname = "relay.example.com"
data_dir = "/var/lib/ptrelay"
[smtp]
max_message_size = "50MiB"
[[smtp.users]]
name = "exchange"
password_hash = "`+testHash+`"
[queue]
lifetime = "1w"
retry_min = "90s"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.WriteRedacted(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, testHash) || strings.Contains(out, "N9qo8uLOickgx2ZMRZoMye") {
		t.Fatalf("the password hash leaked:\n%s", out)
	}
	for _, want := range []string{
		`password_hash = '<redacted>'`,
		`name = 'exchange'`,
		`max_message_size = '50MiB'`,
		`lifetime = '7d'`,
		`retry_min = '1m30s'`,
		`retry_max = '1h'`,
		`mode = 'direct'`, // the effective mode, not ""
		`socket = '/var/lib/ptrelay/admin.sock'`,
		"[smtp]\n", "[[smtp.users]]\n", "[queue]\n", "[admin]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if c.SMTP.Users[0].PasswordHash != testHash {
		t.Errorf("WriteRedacted changed the caller's configuration")
	}
	// Apart from the redacted hash, the output is a configuration file: with the hash put back, it parses.
	restored := strings.Replace(out, "'"+Redacted+"'", "'"+testHash+"'", 1)
	back, err := Parse([]byte(restored), "printed.toml")
	if err != nil {
		t.Fatalf("printed configuration does not parse: %v\n%s", err, restored)
	}
	if back.SMTP.MaxMessageSize != 50<<20 || back.Queue.Lifetime.D().Hours() != 7*24 {
		t.Errorf("values changed through printing: %v %v", back.SMTP.MaxMessageSize, back.Queue.Lifetime)
	}
}

func TestWriteRedactedSectionOrder(t *testing.T) {
	cleanEnv(t)
	var buf bytes.Buffer
	if err := Default().WriteRedacted(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	last := -1
	for _, s := range []string{"hostname =", "[smtp]", "[routing]", "[delivery]", "[queue]", "[dns]", "[egress]", "[admin]"} {
		i := strings.Index(out, s)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of the documented order:\n%s", s, out)
		}
		last = i
	}
	assertRoundTrip(t, Default())
}
