package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// runBin runs the built ptrelay with args and returns its exit code and output (stdout and stderr).
func runBin(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// keygen makes a key with `ptrelay dkim keygen` and returns its file.
func keygen(t *testing.T, bin, dir, selector, algo string) string {
	t.Helper()
	file := filepath.Join(dir, selector+".pem")
	code, out := runBin(t, bin, "dkim", "keygen", "-domain", "example.test", "-selector", selector, "-algo", algo, "-out", file)
	if code != 0 {
		t.Fatalf("keygen exit %d:\n%s", code, out)
	}
	return file
}

// shownRecord is what `ptrelay dkim show -json` prints for one key.
type shownRecord struct {
	Domain, Selector string
	Name, Value      string
	Strings          []string
	Error            string
}

func showRecords(t *testing.T, bin, conf string) []shownRecord {
	t.Helper()
	code, out := runBin(t, bin, "dkim", "show", "-json", "-config", conf)
	var list []shownRecord
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 {
		t.Fatalf("dkim show -json: exit %d, %v\n%s", code, err, out)
	}
	return list
}

func dkimKeysTOML(keys ...[2]string) string {
	var b strings.Builder
	b.WriteString("[dkim]\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "[[dkim.keys]]\ndomain = \"example.test\"\nselector = %q\nprivate_key_file = %q\n", k[0], k[1])
	}
	return b.String()
}

func writeConf(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ptrelay.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// `ptrelay dkim keygen` writes a key OpenDKIM signs with and a record OpenDKIM verifies against; it never
// overwrites; `dkim show` prints the same record from the configuration.
func TestDKIM_KeygenAndShow(t *testing.T) {
	relaytest.Require(t, "opendkim-testmsg", "opendkim")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "example.test.ptr2026a.pem")
	code, out := runBin(t, bin, "dkim", "keygen", "-domain", "example.test", "-selector", "ptr2026a", "-out", file)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	for _, want := range []string{"Wrote the RSA-2048 private key to " + file + " (mode 0600)",
		"name:  ptr2026a._domainkey.example.test", `ptr2026a._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; "`,
		"[[dkim.keys]]\n   domain = \"example.test\"\n   selector = \"ptr2026a\"\n   private_key_file = \"" + file + "\"",
		"ptrelay check -domain example.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("keygen output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, `"`); i >= 0 && strings.Count(line, `"`) == 2 && len(line[i:]) > 257 {
			t.Errorf("a string longer than 255 bytes: %s", line)
		}
	}
	before, _ := os.ReadFile(file)
	code, out = runBin(t, bin, "dkim", "keygen", "-domain", "example.test", "-selector", "ptr2026a", "-out", file)
	after, _ := os.ReadFile(file)
	if code != 1 || !strings.Contains(out, "exists: ptrelay never overwrites a key") || string(before) != string(after) {
		t.Errorf("second keygen: exit %d, key changed %v:\n%s", code, string(before) != string(after), out)
	}
	if code, out := runBin(t, bin, "dkim", "keygen", "-domain", "example.test", "-selector", "x", "-bits", "1024", "-out", file+"2"); code != 1 ||
		!strings.Contains(out, "at least 2048 bits") {
		t.Errorf("1024 bits: exit %d\n%s", code, out)
	}

	conf := writeConf(t, "hostname = \"relay.example.test\"\n"+dkimKeysTOML([2]string{"ptr2026a", file}))
	shown := showRecords(t, bin, conf)
	if len(shown) != 1 || shown[0].Name != "ptr2026a._domainkey.example.test" || strings.Join(shown[0].Strings, "") != shown[0].Value ||
		!strings.Contains(out, "") {
		t.Fatalf("dkim show: %+v", shown)
	}
	if code, text := runBin(t, bin, "dkim", "show", "-config", conf); code != 0 || !strings.Contains(text, shown[0].Value) ||
		!strings.Contains(text, `ptr2026a._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; "`) {
		t.Errorf("dkim show: exit %d\n%s", code, text)
	}

	// OpenDKIM signs with the key file and verifies against the record ptrelay printed.
	msg := "From: a@example.test\r\nTo: b@example.org\r\nSubject: keygen\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nhello\r\n"
	cmd := exec.Command(relaytest.Path(t, "opendkim-testmsg"), "-C", "-d", "example.test", "-s", "ptr2026a", "-k", file)
	cmd.Stdin = strings.NewReader(msg)
	signed, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(signed), "DKIM-Signature:") {
		t.Fatalf("opendkim-testmsg did not sign with the key: %v\n%s", err, signed)
	}
	for _, r := range relaytest.VerifyDKIMOpenDKIM(t, signed, map[string]string{shown[0].Name: shown[0].Value}) {
		if !r.Pass {
			t.Errorf("OpenDKIM does not verify its own signature with ptrelay's record: %+v", r)
		}
	}
}

// `ptrelay check -domain D` with each published-key case on a real unbound: its exit code and its fix line.
func TestDKIM_CheckCases(t *testing.T) {
	relaytest.Require(t, "unbound")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	good := keygen(t, bin, dir, "good", "rsa")
	other := keygen(t, bin, dir, "other", "rsa")
	ed := keygen(t, bin, dir, "ed", "ed25519")
	old := filepath.Join(dir, "old.pem")
	data, _ := os.ReadFile(good)
	if err := os.WriteFile(old, data, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().AddDate(-1, -1, 0)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	recs := map[string]shownRecord{}
	for _, r := range showRecords(t, bin, writeConf(t, "hostname = \"relay.example.test\"\n"+
		dkimKeysTOML([2]string{"good", good}, [2]string{"other", other}, [2]string{"ed", ed}))) {
		recs[r.Selector] = r
	}
	txt := func(name string, strs ...string) string {
		return name + "._domainkey.example.test. TXT \"" + strings.Join(strs, "\" \"") + "\""
	}
	zone := append(append([]string{}, checkZone...),
		txt("good", recs["good"].Strings...),
		txt("two", recs["good"].Strings...), txt("two", recs["other"].Strings...),
		txt("revoked", "v=DKIM1; k=rsa; p="),
		txt("other", recs["other"].Strings...), // published under "other" but the config signs with good.pem
		txt("testing", append(append([]string{}, recs["good"].Strings...), "; t=y")...),
		txt("old", recs["good"].Strings...),
		txt("ed", recs["ed"].Strings...),
		`_dmarc.example.test. TXT "v=DMARC1; p=reject; rua=mailto:d@example.test"`,
	)
	dns := dnstest.StartUnbound(t, zone...)
	probe := acceptAll(t)

	for _, tc := range []struct {
		name, selector, file string
		exit                 int
		levels               string // of the DKIM lines, DMARC's last
		text                 string // in a DKIM line's detail or fix
	}{
		{"published, split in strings", "good", good, 0, "ok,ok", "a probe message signed with it verifies"},
		{"not published", "missing", good, 1, "fail,ok", `publish this TXT record (one record, these strings): missing._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; "`},
		{"two records", "two", good, 1, "fail,ok", "delete every TXT record at two._domainkey.example.test but the one `ptrelay dkim show` prints"},
		{"revoked", "revoked", good, 1, "fail,ok", "is revoked (p= is empty)"},
		{"another key's record", "other", good, 1, "fail,ok", "replace the record with the one `ptrelay dkim show` prints"},
		{"testing flag", "testing", good, 0, "ok,warn,ok", "remove t=y from the record once this check passes"},
		{"a key older than a year", "old", old, 0, "ok,warn,ok", "rotate it (M3AAWG advises every 6 months)"},
		{"Ed25519 only", "ed", ed, 0, "ok,warn,ok", "add an RSA key for example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := checkConfig(dns, "192.0.2.10", probe) + dkimKeysTOML([2]string{tc.selector, tc.file})
			code, res, out := runCheckCmd(t, bin, conf)
			var levels []string
			found := false
			for _, c := range res.DKIM {
				levels = append(levels, c.Level())
				found = found || strings.Contains(c.Detail+" "+c.Fix, tc.text)
			}
			if code != tc.exit || res.Exit != tc.exit || strings.Join(levels, ",") != tc.levels || !found {
				t.Errorf("exit %d, DKIM lines %s; want exit %d, %s, and %q\n%s", code, levels, tc.exit, tc.levels, tc.text, out)
			}
		})
	}

	t.Run("text output", func(t *testing.T) {
		conf := writeConf(t, checkConfig(dns, "192.0.2.10", probe)+dkimKeysTOML([2]string{"revoked", good}))
		out, err := exec.Command(bin, "check", "-domain", "example.test", "-config", conf).Output()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v\n%s", err, out)
		}
		for _, want := range []string{"  fail    DKIM key revoked._domainkey.example.test: the record at revoked._domainkey.example.test is revoked",
			"          fix: if this key should sign, publish this TXT record",
			"  ok      DMARC of example.test: p=reject (_dmarc.example.test); mail ptrelay signs for example.test (d=example.test) aligns",
			"Verdict: direct-ok.", "DKIM: receivers will not verify what ptrelay signs until the DKIM lines marked fail are fixed."} {
			if !strings.Contains(string(out), want) {
				t.Errorf("text output lacks %q:\n%s", want, out)
			}
		}
	})

	// A DNS server that fails: an in-process one, since a real one cannot be told to SERVFAIL one name.
	t.Run("temporary DNS failure", func(t *testing.T) {
		srv := dnstest.New(t, append(append([]string{}, checkZone...), `_dmarc.example.test. TXT "v=DMARC1; p=none"`)...)
		srv.Fail("good._domainkey.example.test.", 0, dnstest.ServFail)
		code, res, out := runCheckCmd(t, bin, checkConfig(srv.Addr(), "192.0.2.10", probe)+dkimKeysTOML([2]string{"good", good}))
		if code != 0 || len(res.DKIM) != 2 || res.DKIM[0].Level() != "unknown" || !strings.Contains(res.DKIM[0].Fix, "run the check again") {
			t.Errorf("exit %d, DKIM %+v\n%s", code, res.DKIM, out)
		}
	})

	t.Run("no key for the domain", func(t *testing.T) {
		code, res, out := runCheckCmd(t, bin, checkConfig(dns, "192.0.2.10", probe))
		if code != 0 || len(res.DKIM) != 2 || res.DKIM[0].Level() != "warn" || !strings.Contains(res.DKIM[0].Fix, "enable DKIM for example.test") ||
			res.DKIM[1].Level() != "warn" {
			t.Errorf("exit %d, DKIM %+v\n%s", code, res.DKIM, out)
		}
	})
}

// acceptAll is a port-25 probe target: anything that accepts TCP on loopback.
func acceptAll(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// `ptrelay queue show` says which key will sign a queued message, from the configuration alone.
func TestDKIM_QueueShowNamesTheKey(t *testing.T) {
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	key := keygen(t, bin, dir, "ptr2026a", "rsa")
	data := filepath.Join(dir, "data")
	st, err := queue.Open(queue.Options{Dir: data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for name, from := range map[string]string{"signed": "a@example.test", "unsigned": "a@example.org"} {
		w, err := st.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "From: %s\r\nSubject: %s\r\n\r\nbody\r\n", from, name)
		id, err := w.Commit(queue.Envelope{From: from}, []queue.Recipient{{Addr: "b@example.net", State: queue.StateQueued}})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	conf := writeConf(t, fmt.Sprintf("hostname = \"relay.example.test\"\ndata_dir = %q\n[admin]\nsocket = %q\n", data,
		filepath.Join(dir, "admin.sock"))+dkimKeysTOML([2]string{"ptr2026a", key}))
	for name, want := range map[string]string{
		"signed":   "DKIM:       will be signed with d=example.test s=ptr2026a when sent",
		"unsigned": "DKIM:       will go out unsigned: no [[dkim.keys]] entry for example.org",
	} {
		code, out := runBin(t, bin, "queue", "show", ids[name], "-config", conf)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("queue show %s: exit %d, want %q:\n%s", name, code, want, out)
		}
	}
}

// selectorOf returns the s= of the (first) DKIM-Signature of a message as smtp-sink dumped it.
func selectorOf(m *relaytest.SinkMessage) string {
	if m == nil {
		return "(no such message)"
	}
	sig := m.Header().Get("DKIM-Signature")
	for _, tag := range strings.Split(strings.Join(strings.Fields(sig), ""), ";") {
		if v, ok := strings.CutPrefix(tag, "s="); ok {
			return v
		}
	}
	return ""
}

// Keys are read at start and at every SIGHUP: a key ptrelay cannot use refuses the start, or the reload, with
// the file and the reason, and the running keys keep signing; a new valid key signs from the reload on.
func TestDKIM_KeysAtStartAndReload(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	bin := relaytest.BuildBinary(t)
	dir := t.TempDir()
	keyA := keygen(t, bin, dir, "a", "rsa")
	keyB := keygen(t, bin, dir, "b", "ed25519")
	short := filepath.Join(dir, "short.pem")
	if out, err := exec.Command(relaytest.Path(t, "openssl"), "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
		"-out", short).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	listen := loopbackAddr(t, "127.0.0.1")
	conf := func(sel, file string) string {
		return opsConfig(listen, sink.Addr(), "1h", dkimKeysTOML([2]string{sel, file}))
	}

	// At start. Bounded, in a directory of its own: a daemon that wrongly starts is killed, and its data stays out
	// of the source tree.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", writeConf(t, conf("short", short)))
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), short+" is a 1024-bit RSA key") {
		t.Fatalf("serve with a 1024-bit key: %v\n%s", err, out)
	}

	d := startDaemon(t, relaytest.DaemonOptions{Config: conf("a", keyA)})
	inject(t, d.Addr(), "x@example.test", "y@example.org", "before")
	if m := sink.WaitMessages(t, 1, 30*time.Second); selectorOf(&m[0]) != "a" {
		t.Fatalf("signed with %q, want a:\n%s", selectorOf(&m[0]), m[0].Data)
	}

	if err := os.WriteFile(d.ConfigFile(), []byte(conf("short", short)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no refusal logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), "reload refused")
	})
	if log := d.Stderr(); !strings.Contains(log, "dkim.keys[1].private_key_file: "+short+" is a 1024-bit RSA key") {
		t.Errorf("the refusal does not name the key file and the reason:\n%s", tailLog(d))
	}
	inject(t, d.Addr(), "x@example.test", "y@example.org", "refused")
	if m := sink.WaitMessages(t, 2, 30*time.Second); selectorOf(bySubject(m, "refused")) != "a" {
		t.Errorf("after the refused reload: signed with %q, want the running key a", selectorOf(bySubject(m, "refused")))
	}

	if err := os.WriteFile(d.ConfigFile(), []byte(conf("b", keyB)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "no reload logged:\n" + tailLog(d) }, func() bool {
		return strings.Contains(d.Stderr(), "d=example.test s=b (ed25519)")
	})
	inject(t, d.Addr(), "x@example.test", "y@example.org", "after")
	if m := sink.WaitMessages(t, 3, 30*time.Second); selectorOf(bySubject(m, "after")) != "b" {
		t.Errorf("after the reload: signed with %q, want b", selectorOf(bySubject(m, "after")))
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}
