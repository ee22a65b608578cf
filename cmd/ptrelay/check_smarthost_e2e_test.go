package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/relay/oauth/oauthtest"
	"ptrelay/relay/relaytest"
)

// TestCheck_Smarthosts: `ptrelay check` has a line per smart host: an XOAUTH2 host (a token fetched from a
// loopback endpoint, STARTTLS with a certificate the binary trusts through SSL_CERT_FILE) is ok after the login,
// a wrong client secret fails with the provider's code and its fix, a closed port with the port to check; no
// mail is sent, and the exit code still says whether direct delivery is fit.
func TestCheck_Smarthosts(t *testing.T) {
	relaytest.Require(t, "unbound")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	certFile, keyFile, _ := relaytest.MakeCert(t, dir, "smtp.oauth.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "right"})
	srv := oauthtest.StartSMTP(t, cert, func(user, tok string) bool { return user == "relay@example.test" && ts.Valid(tok) })
	_, port, _ := net.SplitHostPort(srv.Addr)
	dns := dnstest.StartUnbound(t, append(checkZone, "smtp.oauth.test. A 127.0.0.1")...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	right, wrong := write("right", "right\n"), write("wrong", "wrong\n")
	closed := relaytest.FreePort(t, "127.0.0.1")
	host := func(name, addr, secret string) string {
		return fmt.Sprintf(`
[[smarthosts]]
name = %q
address = %q
auth = "xoauth2"
username = "relay@example.test"
[smarthosts.oauth2]
provider = "generic"
token_url = %q
client_id = "app"
client_secret_file = %q
`, name, addr, ts.URL, secret)
	}
	conf := checkConfig(dns, "192.0.2.10", ln.Addr().String()) + "[routing]\nmode = \"direct\"\n" +
		host("m365", "smtp.oauth.test:"+port, right) + host("stale", "smtp.oauth.test:"+port, wrong) +
		host("gone", "127.0.0.1:"+strconv.Itoa(closed), right)
	file := write("ptrelay.toml", conf)
	cmd := exec.Command(bin, "check", "-domain", "example.test", "-config", file)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check: %v (direct delivery is fit: exit 0 whatever the smart hosts do)\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"ok      smart host m365 (smtp.oauth.test:" + port + "): m365/smtp.oauth.test[127.0.0.1]:" + port + ": TLS, certificate verified; logged in as relay@example.test; no mail sent",
		"fail    smart host stale (smtp.oauth.test:" + port + "): no OAuth2 token: token endpoint: invalid_client AADSTS7000215",
		"fix: the client secret is wrong: write the secret's Value",
		"fail    smart host gone (127.0.0.1:" + strconv.Itoa(closed) + "): cannot connect",
		"fix: check the address and port of smart host gone",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check output lacks %q:\n%s", want, text)
		}
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("check sent %v: no mail may be sent", cmds)
	}
}
