package config

import (
	"strings"
	"testing"
)

// TestOldSmarthostTable: the single [smarthost] table of earlier versions is refused with one error that holds
// the [[smarthosts]] block to write instead; pasted in its place, that block reads back as the same smart host,
// and the routing that used it works again.
func TestOldSmarthostTable(t *testing.T) {
	cleanEnv(t)
	old := `hostname = "relay.example.com"

[smarthost]
address = "smtp.isp.example:465"
tls = "implicit"
tls_verify = false
username = "customer123@isp.example"
password_file = "testdata/files/smarthost.pass"

[routing]
mode = "smarthost"
[[routing.rules]]
domains = ["hotmail.com"]
via = "smarthost"
`
	_, err := Parse([]byte(old), "old.toml")
	problems := Problems(err)
	if len(problems) != 1 || problems[0].Line != 3 || problems[0].Key != "smarthost" {
		t.Fatalf("want one problem at line 3 about [smarthost], got %d:\n%v", len(problems), err)
	}
	msg := problems[0].Msg
	i := strings.Index(msg, "    [[smarthosts]]")
	if i < 0 {
		t.Fatalf("no block in %q", msg)
	}
	var block []string
	for _, line := range strings.Split(msg[i:], "\n") {
		block = append(block, strings.TrimPrefix(line, "    "))
	}
	start := strings.Index(old, "[smarthost]")
	end := strings.Index(old, "[routing]")
	fixed := old[:start] + strings.Join(block, "\n") + "\n\n" + old[end:]
	c, err := Parse([]byte(fixed), "fixed.toml")
	if err != nil {
		t.Fatalf("the printed block does not read back:\n%s\n%v", fixed, err)
	}
	want := NewSmarthost("smarthost", "smtp.isp.example:465")
	want.TLS, want.TLSVerify, want.Username, want.PasswordFile = SmarthostImplicit, false, "customer123@isp.example", "testdata/files/smarthost.pass"
	got := c.Smarthosts[0]
	if len(c.Smarthosts) != 1 || got.Name != want.Name || got.Address != want.Address || got.TLS != want.TLS ||
		got.TLSVerify != want.TLSVerify || got.Username != want.Username || got.PasswordFile != want.PasswordFile ||
		got.Auth != AuthAuto || got.MaxConnections != want.MaxConnections {
		t.Errorf("the block reads back as %+v, want %+v", got, want)
	}
	if got.PasswordCredential() != credentialName {
		t.Errorf("the block's host reads its password from credential %q, not the shipped unit's %q", got.PasswordCredential(), credentialName)
	}
}

// TestDKIMSafe: dkim_safe_headers = "auto" is on for Amazon SES's hosts only; true and false win.
func TestDKIMSafe(t *testing.T) {
	for _, c := range []struct {
		address string
		v       AutoBool
		want    bool
	}{
		{"email-smtp.eu-west-1.amazonaws.com:587", AutoBoolAuto, true},
		{"inbound-smtp.us-east-1.amazonses.com:25", "", true},
		{"amazonaws.com.evil.example:587", AutoBoolAuto, false},
		{"smtp.office365.com:587", AutoBoolAuto, false},
		{"smtp.office365.com:587", AutoBoolTrue, true},
		{"email-smtp.eu-west-1.amazonaws.com:587", AutoBoolFalse, false},
	} {
		h := NewSmarthost("h", c.address)
		h.DKIMSafeHeaders = c.v
		if got := h.DKIMSafe(); got != c.want {
			t.Errorf("%s with %q: %v, want %v", c.address, c.v, got, c.want)
		}
	}
}
