package relaytest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// DKIM verifiers other than the one ptrelay signs with (go-msgauth), so that a bug shared by ptrelay's signer
// and its own verifier cannot pass unnoticed: Debian's python3-dkim (dkimpy) and OpenDKIM.

// DKIMResult is one signature of a message as an independent verifier judged it.
type DKIMResult struct {
	Domain, Selector string
	Pass             bool
	Detail           string // the verifier's words on a failure
}

// dkimpyScript verifies every DKIM-Signature of the message on stdin with dkimpy, looking keys up at the DNS
// server argv[1] ("ip:port") with dnspython, and prints one line per signature: "pass d s" or "fail d s why".
const dkimpyScript = `
import re, sys, dkim, dns.resolver
server, port = sys.argv[1].rsplit(":", 1)
r = dns.resolver.Resolver(configure=False)
r.nameservers = [server]
r.port = int(port)
def txt(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        ans = r.resolve(name, "TXT", lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(ans[0].strings)
msg = sys.stdin.buffer.read()
header = re.sub(rb"\r\n[ \t]", b" ", msg.split(b"\r\n\r\n", 1)[0])
sigs = [l.split(b":", 1)[1] for l in header.split(b"\r\n") if l.lower().startswith(b"dkim-signature:")]
for i, sig in enumerate(sigs):
    tags = dict((k.strip(), v.strip()) for k, v in (t.split(b"=", 1) for t in re.sub(rb"\s", b"", sig).split(b";") if b"=" in t))
    d, s = tags.get(b"d", b"?").decode(), tags.get(b"s", b"?").decode()
    try:
        ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=txt)
        print(("pass " if ok else "fail ") + d + " " + s + ("" if ok else " signature did not verify"))
    except Exception as e:
        print("fail " + d + " " + s + " " + str(e).replace("\n", " "))
`

// VerifyDKIMPython verifies every DKIM signature of msg (CRLF text, as received) with dkimpy, which looks the
// keys up at dnsAddr ("127.0.0.1:port", e.g. an unbound of dnscheck/dnstest). It runs the Python interpreter of
// Debian's dkimverify, which has the dkim module. Skips (fails under PTRELAY_E2E=1) without python3-dkim.
func VerifyDKIMPython(t testing.TB, msg []byte, dnsAddr string) []DKIMResult {
	t.Helper()
	python := dkimverifyInterpreter(t)
	out, err := run(t, 60*time.Second, msg, python, "-c", dkimpyScript, dnsAddr)
	if err != nil {
		t.Fatalf("relaytest: dkimpy: %v\n%s", err, out)
	}
	var res []DKIMResult
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 || (f[0] != "pass" && f[0] != "fail") {
			continue
		}
		r := DKIMResult{Pass: f[0] == "pass", Domain: f[1], Selector: f[2]}
		if len(f) == 4 {
			r.Detail = f[3]
		}
		res = append(res, r)
	}
	return res
}

// dkimverifyInterpreter returns the interpreter of Debian's dkimverify script (/usr/bin/python3): a python3
// earlier in $PATH (pyenv, a venv) may lack the dkim module.
func dkimverifyInterpreter(t testing.TB) string {
	t.Helper()
	script := Path(t, "dkimverify")
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, _ := bufio.NewReader(f).ReadString('\n')
	interp := strings.TrimSpace(strings.TrimPrefix(first, "#!"))
	if fields := strings.Fields(interp); len(fields) > 0 {
		interp = fields[0]
	}
	if interp == "" || !strings.HasPrefix(interp, "/") {
		t.Fatalf("relaytest: %s has no interpreter line: %q", script, first)
	}
	return interp
}

var openDKIMResult = regexp.MustCompile(`dkim=(\w+)[^;]*?header\.d=(\S+)[^;]*?header\.s=(\S+)`)

// VerifyDKIMOpenDKIM verifies every DKIM signature of msg with OpenDKIM (`opendkim -t`, its test mode: the
// milter's verifier run on a file). OpenDKIM resolves through libunbound and cannot be pointed at a DNS server on
// a port other than 53, so the keys are given to it as TestDNSData: records maps "selector._domainkey.domain"
// to the TXT record (its strings joined) as the test's DNS server serves it. Skips (fails under
// PTRELAY_E2E=1) without opendkim.
func VerifyDKIMOpenDKIM(t testing.TB, msg []byte, records map[string]string) []DKIMResult {
	t.Helper()
	bin := Path(t, "opendkim")
	dir := t.TempDir()
	var data strings.Builder
	for name, rec := range records {
		fmt.Fprintf(&data, "%s %s\n", name, rec)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dnsData := write("dnsdata", data.String())
	conf := write("opendkim.conf", "Mode v\nSyslog no\nTestDNSData file:"+dnsData+"\n")
	file := write("message.eml", string(msg))
	out, err := run(t, 60*time.Second, nil, bin, "-x", conf, "-vv", "-t", file)
	if err != nil {
		t.Fatalf("relaytest: opendkim -t: %v\n%s", err, out)
	}
	// -vv prints the Authentication-Results field it would add: one dkim= result per signature.
	var res []DKIMResult
	for _, m := range openDKIMResult.FindAllStringSubmatch(out, -1) {
		res = append(res, DKIMResult{Pass: m[1] == "pass", Domain: m[2], Selector: m[3], Detail: m[1]})
	}
	if len(res) == 0 {
		t.Fatalf("relaytest: opendkim -t gave no dkim= result:\n%s", out)
	}
	return res
}
