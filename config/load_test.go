package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultMatchesDesign(t *testing.T) {
	cleanEnv(t)
	c := Default()
	host, _ := os.Hostname()
	checks := []struct {
		key       string
		got, want any
	}{
		{"hostname", c.Hostname, host},
		{"data_dir", c.DataDir, "./ptrelay-data"},
		{"smtp.listen", c.SMTP.Listen, []string{"127.0.0.1:2525"}},
		{"smtp.allowed_networks", c.SMTP.AllowedNetworks, []string{"127.0.0.0/8", "::1/128"}},
		{"smtp.max_message_size", c.SMTP.MaxMessageSize, Size(35_000_000)},
		{"smtp.max_recipients", c.SMTP.MaxRecipients, 500},
		{"smtp.max_connections", c.SMTP.MaxConnections, 200},
		{"smtp.tls_cert", c.SMTP.TLSCert, ""},
		{"smtp.tls_legacy", c.SMTP.TLSLegacy, false},
		{"smtp.bare_newlines", c.SMTP.BareNewlines, BareNewlinesReject},
		{"smtp.auth_requires_tls", c.SMTP.AuthRequiresTLS, true},
		{"smtp.users", len(c.SMTP.Users), 0},
		{"smarthosts", len(c.Smarthosts), 0},
		{"routing.mode", c.Routing.Mode, RoutingDefault},
		{"routing.reroute", c.Routing.Reroute, true},
		{"delivery.port", c.Delivery.Port, 25},
		{"delivery.tls", c.Delivery.TLS, DeliveryOpportunistic},
		{"delivery.concurrency", c.Delivery.Concurrency, 100},
		{"delivery.per_destination", c.Delivery.PerDestination, 20},
		{"delivery.smarthost_failover_after", c.Delivery.SmarthostFailoverAfter, 3},
		{"delivery.smarthost_down_min", c.Delivery.SmarthostDownMin.D(), time.Minute},
		{"delivery.smarthost_down_max", c.Delivery.SmarthostDownMax.D(), 30 * time.Minute},
		{"queue.retry_min", c.Queue.RetryMin.D(), 5 * time.Minute},
		{"queue.retry_max", c.Queue.RetryMax.D(), time.Hour},
		{"queue.lifetime", c.Queue.Lifetime.D(), 5 * 24 * time.Hour},
		{"queue.delay_warning", c.Queue.DelayWarning.D(), 4 * time.Hour},
		{"dns.resolvers", len(c.DNS.Resolvers), 0},
		{"dns.timeout", c.DNS.Timeout.D(), 5 * time.Second},
		{"egress.ip", c.Egress.IP, ""},
		{"egress.discovery", c.Egress.Discovery, []string{"dns", "local"}},
		{"egress.whoami", c.Egress.Whoami, []string{"resolver1.opendns.com:53"}},
		{"egress.dnsbl", c.Egress.DNSBL, []string{"zen.spamhaus.org"}},
		{"egress.port25_probe", c.Egress.Port25Probe, "gmail-smtp-in.l.google.com:25"},
		{"egress.check_interval", c.Egress.CheckInterval.D(), 10 * time.Minute},
		{"admin.socket", c.Admin.Socket, ""},
		{"admin.metrics_listen", c.Admin.MetricsListen, ""},
		{"effective routing.mode", c.EffectiveRoutingMode(), RoutingDirect},
		{"effective admin.socket", c.AdminSocket(), filepath.Join("ptrelay-data", "admin.sock")},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %#v, want %#v", ch.key, ch.got, ch.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	// Default returns a fresh value each time: callers may change it.
	c.SMTP.Listen[0] = "changed"
	if Default().SMTP.Listen[0] != "127.0.0.1:2525" {
		t.Fatal("Default shares state between calls")
	}
}

func TestSystemdDirectories(t *testing.T) {
	cleanEnv(t)
	t.Setenv("STATE_DIRECTORY", "/var/lib/ptrelay:/var/lib/other")
	t.Setenv("RUNTIME_DIRECTORY", "/run/ptrelay")
	c := Default()
	if c.DataDir != "/var/lib/ptrelay" {
		t.Errorf("data_dir = %q, want the first $STATE_DIRECTORY entry", c.DataDir)
	}
	if got := c.AdminSocket(); got != "/run/ptrelay/admin.sock" {
		t.Errorf("AdminSocket = %q, want $RUNTIME_DIRECTORY/admin.sock", got)
	}
	c.Admin.Socket = "/srv/admin.sock"
	if got := c.AdminSocket(); got != "/srv/admin.sock" {
		t.Errorf("AdminSocket = %q, want admin.socket", got)
	}
	// An explicit data_dir wins over the environment; an empty one means the default.
	c2, err := Parse([]byte("data_dir = \"/srv/ptrelay\"\n"), "t.toml")
	if err != nil || c2.DataDir != "/srv/ptrelay" {
		t.Fatalf("data_dir from file: %v %v", c2, err)
	}
	c3, err := Parse([]byte("data_dir = \"\"\nhostname = \"\"\n"), "t.toml")
	if err != nil || c3.DataDir != "/var/lib/ptrelay" || c3.Hostname == "" {
		t.Fatalf("empty data_dir/hostname should take the defaults: %+v %v", c3, err)
	}
}

func TestEffectiveRoutingMode(t *testing.T) {
	for _, tc := range []struct {
		mode    RoutingMode
		address string
		want    RoutingMode
	}{
		{"", "", "direct"},
		{"", "smtp.isp.example:587", "auto"},
		{"direct", "smtp.isp.example:587", "direct"},
		{"smarthost", "smtp.isp.example:587", "smarthost"},
		{"auto", "", "auto"},
	} {
		c := &Config{Routing: Routing{Mode: tc.mode}}
		if tc.address != "" {
			c.Smarthosts = []Smarthost{NewSmarthost("isp", tc.address)}
		}
		if got := c.EffectiveRoutingMode(); got != tc.want {
			t.Errorf("mode %q with smart host %q: %q, want %q", tc.mode, tc.address, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOrder(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	flagFile := writeFile(t, dir, "flag.toml", "[smtp]\nmax_recipients = 1\n")
	envFile := writeFile(t, dir, "env.toml", "[smtp]\nmax_recipients = 2\n")
	sysFile := writeFile(t, dir, "sys.toml", "[smtp]\nmax_recipients = 3\n")
	missing := filepath.Join(dir, "missing.toml")

	for _, tc := range []struct {
		name                string
		flag, env, sys      string
		wantSource          string
		wantRecipients      int
		wantErrNotExistFile bool
	}{
		{"flag wins", flagFile, envFile, sysFile, flagFile, 1, false},
		{"env next", "", envFile, sysFile, envFile, 2, false},
		{"system file next", "", "", sysFile, sysFile, 3, false},
		{"embedded defaults last", "", "", missing, SourceDefaults, 500, false},
		{"a named file must exist", missing, "", sysFile, missing, 0, true},
		{"an env file must exist", "", missing, sysFile, missing, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, src, err := load(tc.flag, tc.env, tc.sys)
			if src != tc.wantSource {
				t.Errorf("source = %q, want %q", src, tc.wantSource)
			}
			if tc.wantErrNotExistFile {
				if !errors.Is(err, fs.ErrNotExist) || c != nil {
					t.Fatalf("want a not-exist error and no config, got %v, %v", c, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.SMTP.MaxRecipients != tc.wantRecipients {
				t.Errorf("max_recipients = %d, want %d", c.SMTP.MaxRecipients, tc.wantRecipients)
			}
		})
	}

	// The exported Load reads $PTRELAY_CONFIG.
	t.Setenv("PTRELAY_CONFIG", envFile)
	c, src, err := Load("")
	if err != nil || src != envFile || c.SMTP.MaxRecipients != 2 {
		t.Fatalf("Load with $PTRELAY_CONFIG: %v %q %v", c, src, err)
	}
	// And reports the file of an invalid configuration.
	bad := writeFile(t, dir, "bad.toml", "[smtp]\nmax_recipients = 0\n")
	c, src, err = Load(bad)
	if c != nil || src != bad || err == nil || !strings.Contains(err.Error(), bad+":2: smtp.max_recipients") {
		t.Fatalf("Load(bad) = %v, %q, %v", c, src, err)
	}
}

func TestOverlay(t *testing.T) {
	cleanEnv(t)
	c, err := Parse([]byte(`
[smtp]
listen = [":25", ":587"]
[dns]
resolvers = ["127.0.0.1", "::1", "10.0.0.1:5353"]
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.SMTP.Listen, []string{":25", ":587"}) {
		t.Errorf("a list in the file replaces the default list, got %v", c.SMTP.Listen)
	}
	if c.SMTP.MaxRecipients != 500 || c.Queue.Lifetime.D() != 5*24*time.Hour || !c.SMTP.AuthRequiresTLS {
		t.Errorf("keys absent from the file must keep their defaults: %+v", c)
	}
	if want := []string{"127.0.0.1:53", "[::1]:53", "10.0.0.1:5353"}; !slices.Equal(c.DNS.Resolvers, want) {
		t.Errorf("resolvers = %v, want %v (bare IPs get port 53)", c.DNS.Resolvers, want)
	}
	// A boolean default of true can be turned off.
	c, err = Parse([]byte("[smtp]\nauth_requires_tls = false\n[routing]\nreroute = false\n"), "t.toml")
	if err != nil || c.SMTP.AuthRequiresTLS || c.Routing.Reroute {
		t.Fatalf("false did not overlay true: %+v %v", c, err)
	}
}

func TestProblemsCarryKeyAndLine(t *testing.T) {
	cleanEnv(t)
	_, err := Parse([]byte("# comment\n[delivery]\nport = 70000\n\n[[smtp.users]]\nname = \"a\"\n"), "p.toml")
	ps := Problems(err)
	if len(ps) != 2 {
		t.Fatalf("want 2 problems, got %d: %v", len(ps), err)
	}
	if ps[0].Key != "delivery.port" || ps[0].Line != 3 || ps[0].File != "p.toml" {
		t.Errorf("first problem = %+v", ps[0])
	}
	// password_hash is absent: the problem points at its [[smtp.users]] table.
	if ps[1].Key != "smtp.users[1].password_hash" || ps[1].Line != 5 {
		t.Errorf("second problem = %+v", ps[1])
	}
	// Validate on a Config built in code names keys without a file.
	c := Default()
	c.Delivery.Concurrency = 0
	ps = Problems(c.Validate())
	if len(ps) != 1 || ps[0].File != "" || ps[0].Error() != ps[0].Msg || !strings.HasPrefix(ps[0].Msg, "delivery.concurrency: ") {
		t.Fatalf("Validate in code: %+v", ps)
	}
	if _, err := Parse([]byte("[smtp]\nmax_recipients = -1\n"), ""); err == nil || err.Error() != "line 2: smtp.max_recipients: must be positive: write a number such as 500" {
		t.Errorf("Parse without a file name: %v", err)
	}
	if Problems(nil) != nil {
		t.Fatal("Problems(nil) must be nil")
	}
}

func TestSmarthostCredentials(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	base := "[[smarthosts]]\nname = \"smarthost\"\naddress = \"smtp.isp.example:587\"\nusername = \"u\"\n"

	pass := writeFile(t, dir, "pass", "pa ss\n")
	c, err := Parse([]byte(base+"password_file = \""+pass+"\"\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Smarthosts[0].Password(); err != nil || got != "pa ss" {
		t.Fatalf("Password = %q, %v", got, err)
	}

	for _, tc := range []struct{ content, want string }{
		{"secret", "secret"},
		{"secret\r\n", "secret"},
		{"secret\n\n", "secret\n"}, // only one newline is the editor's
		{" secret \n", " secret "},
	} {
		p := writeFile(t, dir, "p", tc.content)
		sh := Smarthost{Name: "isp", PasswordFile: p}
		if got, err := sh.Password(); err != nil || got != tc.want {
			t.Errorf("password file %q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	empty := Smarthost{Name: "isp", PasswordFile: writeFile(t, dir, "empty", "\n")}
	if _, err := empty.Password(); err == nil {
		t.Error("an empty password file must be an error")
	}
	if _, err := (&Smarthost{Name: "isp"}).Password(); err == nil {
		t.Error("no password source must be an error")
	}

	// systemd's LoadCredential: no password_file, the credential named after the host in $CREDENTIALS_DIRECTORY.
	// The file itself is valid in an admin's shell, which has no credentials: only the daemon (CheckSecrets)
	// insists on them.
	c, err = Parse([]byte(base), "t.toml")
	if err != nil {
		t.Fatalf("a username without a password file must parse (the credential comes from systemd): %v", err)
	}
	if err := Refused(c.CheckSecrets(SecretsOptions{Daemon: true})); err == nil || !strings.Contains(err.Error(), "smarthosts[1].password_file: is empty and there is no password") {
		t.Fatalf("CheckSecrets without any password source: %v", err)
	}
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if err := Refused(c.CheckSecrets(SecretsOptions{Daemon: true})); err == nil || !strings.Contains(err.Error(), `no "smarthost" credential`) {
		t.Fatalf("missing credential file: %v", err)
	}
	writeFile(t, creds, "smarthost", "from-systemd\n")
	if found := c.CheckSecrets(SecretsOptions{Daemon: true}); len(found) != 0 {
		t.Fatal(found)
	}
	if got, err := c.Smarthosts[0].Password(); err != nil || got != "from-systemd" {
		t.Fatalf("Password from credentials = %q, %v", got, err)
	}
	// Where an admin fixes the password: the file LoadCredential= names, never systemd's copy of it.
	if src := c.Smarthosts[0].PasswordSource(); !strings.Contains(src, "LoadCredential=smarthost:") ||
		!strings.Contains(src, "/etc/ptrelay/smarthost.pass") || strings.Contains(src, creds) || strings.Contains(src, "CREDENTIALS_DIRECTORY") {
		t.Errorf("password source with credentials: %q", src)
	}
	// Another name: its own credential, which the shipped unit does not hand over.
	other := Smarthost{Name: "isp"}
	if src := other.PasswordSource(); !strings.Contains(src, "LoadCredential=isp:FILE") || !strings.Contains(src, "systemctl edit") {
		t.Errorf("password source of another host: %q", src)
	}
	writeFile(t, creds, "isp", "isp-pass\n")
	if got, err := other.Password(); err != nil || got != "isp-pass" {
		t.Errorf("Password of host isp from $CREDENTIALS_DIRECTORY/isp = %q, %v", got, err)
	}
	c.Smarthosts[0].PasswordFile = pass
	if src := c.Smarthosts[0].PasswordSource(); src != pass {
		t.Errorf("password source with password_file: %q, want %q", src, pass)
	}
}

func TestPlaintextCredentialsOnlyOnLAN(t *testing.T) {
	cleanEnv(t)
	pass := writeFile(t, t.TempDir(), "pass", "x\n")
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"[::1]", true},
		{"localhost", true},
		{"10.1.2.3", true},
		{"172.16.0.5", true},
		{"192.168.1.5", true},
		{"[fd00::25]", true},
		{"[::ffff:192.168.1.5]", true},
		{"203.0.113.5", false},
		{"[2001:db8::1]", false},
		{"172.32.0.1", false},
		{"mail.lan", false},
	} {
		doc := "[[smarthosts]]\nname = \"lan\"\naddress = \"" + tc.host + ":25\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"" + pass + "\"\n"
		_, err := Parse([]byte(doc), "t.toml")
		if (err == nil) != tc.ok {
			t.Errorf("tls none with credentials to %s: err = %v, want ok=%v", tc.host, err, tc.ok)
		}
	}
	// Without a username nothing secret crosses the wire: any address is fine.
	if _, err := Parse([]byte("[[smarthosts]]\nname = \"lan\"\naddress = \"203.0.113.5:25\"\ntls = \"none\"\n"), "t.toml"); err != nil {
		t.Errorf("tls none without credentials: %v", err)
	}
}

func TestBcryptShape(t *testing.T) {
	for _, tc := range []struct {
		hash string
		ok   bool
	}{
		{testHash, true},
		{"$2b$12$" + testHash[7:], true},
		{"$2y$04$" + testHash[7:], true},
		{"$2x$10$" + testHash[7:], false},
		{"$2a$03$" + testHash[7:], false},
		{"$2a$32$" + testHash[7:], false},
		{testHash[:59], false},
		{testHash + "A", false},
		{"$1$abc", false},
		{"plaintext", false},
	} {
		if got := bcryptHash.MatchString(tc.hash); got != tc.ok {
			t.Errorf("bcrypt shape of %q = %v, want %v", tc.hash, got, tc.ok)
		}
	}
}

func TestEditDistanceAndSuggestions(t *testing.T) {
	if d := editDistance("retry_mim", "retry_min"); d != 1 {
		t.Errorf("editDistance = %d", d)
	}
	for in, want := range map[string]string{
		"queue.retry_mim":         "queue.retry_min",
		"smtp.alowed_networks":    "smtp.allowed_networks",
		"smarthosts.pasword_file": "smarthosts.password_file",
		"smtp.something_else":     "",
		"egress.dnsbl_zones_here": "",
	} {
		if got := suggestKey(in); got != want {
			t.Errorf("suggestKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSendingDomain(t *testing.T) {
	for host, want := range map[string]string{"relay.example.com": "example.com", "mx1.mail.example.org.": "mail.example.org",
		"localhost": ""} {
		if got := (&Config{Hostname: host}).SendingDomain(); got != want {
			t.Errorf("SendingDomain of %q = %q, want %q", host, got, want)
		}
	}
}
