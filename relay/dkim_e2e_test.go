package relay

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/relay/dkim"
	"ptrelay/relay/relaytest"
)

// The DKIM path end to end, with real peers on loopback: clients' messages arrive by DATA and BDAT, ptrelay
// signs them with an RSA-2048 and an Ed25519 key and delivers them directly to smtp-sink (MX records from a real
// unbound) and through a real Postfix smart host to another smtp-sink; the bytes the sinks received are then
// verified by verifiers other than ptrelay's own: dkimpy (python3-dkim), which looks the keys up in the same
// unbound (the RSA record split into several strings), and OpenDKIM. ptrelay's own bounce is signed too.

// dkimCase is one message of the end-to-end test.
type dkimCase struct {
	name   string
	header string // the header section as the client sends it, CRLF
	body   string // the body, CRLF
	bdat   bool   // sent with BDAT in small chunks instead of DATA
	eight  bool   // MAIL FROM ... BODY=8BITMIME
}

var dkimCases = []dkimCase{
	{name: "dot lines", body: ".\r\n..\r\n.leading dot\r\n...three\r\nlast\r\n"},
	{name: "lines ending in spaces", body: "two spaces  \r\na tab\t\r\n   \r\nmixed \t \r\nend\r\n"},
	{name: "long folded headers", header: "Subject: a long subject that the sender folded over several lines because it\r\n" +
		" was longer than seventy-eight characters, as RFC 5322 asks\r\n\tand then once more\r\n" +
		"To: one@dest.test, two@dest.test, three@dest.test, four@dest.test, five@dest.test,\r\n" +
		"  six@dest.test, seven@dest.test\r\n" +
		"X-Long: " + strings.Repeat("0123456789", 90) + "\r\n",
		body: "folded\r\n"},
	{name: "body ending in blank lines", body: "text\r\n\r\n\r\n\r\n"},
	{name: "8-bit body", eight: true, header: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
		body: "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\nlatin-1 \xe9\xe8 raw\r\n"},
	{name: "BDAT chunks", bdat: true, eight: true, body: strings.Repeat(".dot line in BDAT \xc3\xa9  \r\n", 200) + "\r\n\r\n"},
}

// message builds a case's message: From: at contoso.test (which has keys), a Subject naming the case unless
// the case brings its own header.
func (c dkimCase) message(i int) []byte {
	h := "From: Alice <alice@contoso.test>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <dkim" + strconv.Itoa(i) + "@contoso.test>\r\n"
	if !strings.Contains(c.header, "Subject:") {
		h += "Subject: dkim case " + strconv.Itoa(i) + "\r\n"
	}
	if !strings.Contains(c.header, "To:") {
		h += "To: x@dest.test\r\n"
	}
	h += "X-Case: " + strconv.Itoa(i) + "\r\n" + c.header
	return []byte(h + "\r\n" + c.body)
}

// send hands one message to the relay with DATA (dot-stuffed) or BDAT, to every recipient.
func (c dkimCase) send(t *testing.T, addr string, from string, msg []byte, rcpts ...string) {
	t.Helper()
	rc := dialRaw(t, addr)
	mail := "MAIL FROM:<" + from + ">"
	if c.eight {
		mail += " BODY=8BITMIME"
	}
	rc.cmd(mail, "250")
	for _, r := range rcpts {
		rc.cmd("RCPT TO:<"+r+">", "250")
	}
	if c.bdat {
		// Chunks of 97 bytes: lines, CR LF pairs and leading dots fall on both sides of chunk boundaries.
		for rest := msg; len(rest) > 0; {
			n := min(97, len(rest))
			head := fmt.Sprintf("BDAT %d", n)
			if n == len(rest) {
				head += " LAST"
			}
			if _, err := rc.c.Write(append([]byte(head+"\r\n"), rest[:n]...)); err != nil {
				t.Fatal(err)
			}
			rc.expect("250")
			rest = rest[n:]
		}
	} else {
		rc.cmd("DATA", "354")
		var stuffed bytes.Buffer
		for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
			if bytes.HasPrefix(line, []byte(".")) {
				stuffed.WriteByte('.')
			}
			stuffed.Write(line)
		}
		stuffed.WriteString(".\r\n")
		if _, err := rc.c.Write(stuffed.Bytes()); err != nil {
			t.Fatal(err)
		}
		rc.expect("250")
	}
	rc.cmd("QUIT", "221")
}

// dkimKey writes a key and returns its file and the record that publishes it.
func dkimKey(t *testing.T, dir, algo, selector string) (string, dkim.Record) {
	t.Helper()
	k, err := dkim.Generate(algo, 2048)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, selector+".pem")
	if err := dkim.WriteKeyFile(file, k); err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.RecordOf(selector+"._domainkey.contoso.test", crypto.Signer(k).Public())
	if err != nil {
		t.Fatal(err)
	}
	return file, rec
}

// zoneTXT writes a record as a zone-file TXT line with every one of its strings.
func zoneTXT(rec dkim.Record) string {
	quoted := make([]string, len(rec.Strings))
	for i, s := range rec.Strings {
		quoted[i] = `"` + s + `"`
	}
	return rec.Name + ". TXT " + strings.Join(quoted, " ")
}

func TestE2E_DKIMSignedMailVerifiesElsewhere(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound", "dkimverify", "opendkim", "postfix", "saslpasswd2")
	dir := t.TempDir()
	rsaFile, rsaRec := dkimKey(t, dir, "rsa", "ptr2026a")
	edFile, edRec := dkimKey(t, dir, "ed25519", "ptr2026e")
	if len(rsaRec.Strings) < 3 {
		t.Fatalf("the RSA record is not split into strings: %q", rsaRec.Strings)
	}

	direct := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.51:0", Hostname: "mx.dest.test"})
	port := direct.Port()
	senderMX := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.53:" + strconv.Itoa(port), Hostname: "mx.contoso.test"})
	relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.54:" + strconv.Itoa(port), Hostname: "mx.reject.test",
		Reject: map[string]string{"RCPT": "550 5.1.1 no such user"}})
	behind := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.55:0", Hostname: "behind.test"})
	pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{Addr: "127.0.0.52:0", Users: map[string]string{"relayuser": "pw"},
		RelayTo: behind.Addr(), AuthWithoutTLS: true})
	dnsAddr := dnstest.StartUnbound(t,
		"dest.test. MX 10 mx.dest.test.", "mx.dest.test. A 127.0.0.51",
		"contoso.test. MX 10 mx.contoso.test.", "mx.contoso.test. A 127.0.0.53",
		"reject.test. MX 10 mx.reject.test.", "mx.reject.test. A 127.0.0.54",
		zoneTXT(rsaRec), zoneTXT(edRec))

	pass := filepath.Join(dir, "smarthost.pass")
	if err := os.WriteFile(pass, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, addr := startDKIMRelay(t, fmt.Sprintf(`
[routing]
mode = "direct"
reroute = false
[[routing.rules]]
domains = ["far.test"]
via = "smarthost"
[delivery]
port = %d
[dkim]
[[dkim.keys]]
domain = "contoso.test"
selector = "ptr2026a"
private_key_file = %q
[[dkim.keys]]
domain = "contoso.test"
selector = "ptr2026e"
private_key_file = %q
[dns]
resolvers = [%q]
timeout = "2s"
`, port, rsaFile, edFile, dnsAddr)+smarthostTOML(pf.Addr(), "relayuser", pass))

	sent := map[string][]byte{} // X-Case -> the message as the client sent it
	for i, c := range dkimCases {
		msg := c.message(i)
		sent[strconv.Itoa(i)] = msg
		c.send(t, addr, "alice@contoso.test", msg, "x@dest.test", "y@far.test")
	}
	unsigned := []byte("From: bob@other.test\r\nTo: x@dest.test\r\nSubject: no key\r\nX-Case: unsigned\r\n\r\nplain\r\n")
	dkimCase{}.send(t, addr, "bob@other.test", unsigned, "x@dest.test")
	dkimCase{}.send(t, addr, "alice@contoso.test", dkimCase{body: "bounce me\r\n"}.message(99), "nobody@reject.test")

	directMsgs := direct.WaitMessages(t, len(dkimCases)+1, 60*time.Second)
	behindMsgs := behind.WaitMessages(t, len(dkimCases), 60*time.Second)
	dsn := senderMX.WaitMessages(t, 1, 60*time.Second)[0]
	waitQueueEmpty(t, r)

	// What OpenDKIM is told the DNS holds: the records as unbound serves them.
	res, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: []string{dnsAddr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for _, name := range []string{rsaRec.Name, edRec.Name} {
		txts, err := res.LookupTXT(context.Background(), name)
		if err != nil || len(txts) != 1 {
			t.Fatalf("unbound serves %q for %s (%v)", txts, name, err)
		}
		records[name] = txts[0]
	}
	if records[rsaRec.Name] != rsaRec.Value {
		t.Fatalf("unbound joined the RSA record's strings into %q", records[rsaRec.Name])
	}

	checked := 0
	for _, hop := range []struct {
		name string
		msgs []relaytest.SinkMessage
	}{{"direct", directMsgs}, {"through the smart host", behindMsgs}} {
		for _, m := range hop.msgs {
			data := crlf(m.Data)
			id := m.Header().Get("X-Case")
			if id == "unsigned" {
				if bytes.Contains(data, []byte("DKIM-Signature")) {
					t.Errorf("mail From: a domain without a key was signed:\n%s", data)
				}
				continue
			}
			want, ok := sent[id]
			if !ok {
				t.Errorf("%s: unexpected message:\n%s", hop.name, data)
				continue
			}
			name := hop.name + ": " + dkimCases[mustAtoi(t, id)].name
			if !bytes.HasSuffix(data, want) {
				t.Errorf("%s: the client's message did not arrive byte for byte after the added fields:\n%q", name, data)
			}
			assertVerifies(t, name, data, dnsAddr, records, []string{"ptr2026a", "ptr2026e"})
			checked++
		}
	}
	if checked != 2*len(dkimCases) {
		t.Errorf("verified %d messages, want %d", checked, 2*len(dkimCases))
	}
	// The verifiers can say no: one changed byte of a body fails every signature with both.
	var tampered []byte
	for _, m := range directMsgs {
		if m.Header().Get("X-Case") == "0" {
			tampered = crlf(m.Data)
		}
	}
	if len(tampered) < 3 {
		t.Fatal("case 0 did not arrive")
	}
	tampered[len(tampered)-3] ^= 0x20 // in the last line of the body
	py := relaytest.VerifyDKIMPython(t, tampered, dnsAddr)
	od := relaytest.VerifyDKIMOpenDKIM(t, tampered, records)
	for _, r := range append(py, od...) {
		if r.Pass {
			t.Errorf("a changed body still verifies: %+v", r)
		}
	}
	if len(py) != 2 || len(od) != 2 {
		t.Errorf("on the changed message dkimpy saw %d signatures, OpenDKIM %d; want 2 each", len(py), len(od))
	}
	// ptrelay's own bounce: From: MAILER-DAEMON@relay.contoso.test, signed with the key of hostname's domain.
	if from := dsn.Header().Get("From"); !strings.Contains(from, "MAILER-DAEMON@relay.contoso.test") {
		t.Fatalf("the sender's MX got %q, not ptrelay's bounce", from)
	}
	assertVerifies(t, "ptrelay's bounce", crlf(dsn.Data), dnsAddr, records, []string{"ptr2026a", "ptr2026e"})

	// Alert mail through alerts.mail_via leaves by the alert manager's own client, which signs with what the
	// daemon hands it.
	alert := []byte("From: \"ptrelay on relay.contoso.test\" <ptrelay@relay.contoso.test>\r\nTo: it@contoso.test\r\n" +
		"Subject: [ptrelay] alert\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nsomething happened\r\n")
	fields, err := r.signOwn(alert)
	if err != nil {
		t.Fatal(err)
	}
	assertVerifies(t, "alert mail", append(fields, alert...), dnsAddr, records, []string{"ptr2026a", "ptr2026e"})
}

// assertVerifies checks that both independent verifiers pass every signature of data, and that the
// signatures are those of selectors.
func assertVerifies(t *testing.T, name string, data []byte, dnsAddr string, records map[string]string, selectors []string) {
	t.Helper()
	py := relaytest.VerifyDKIMPython(t, data, dnsAddr)
	od := relaytest.VerifyDKIMOpenDKIM(t, data, records)
	for _, v := range []struct {
		who string
		res []relaytest.DKIMResult
	}{{"dkimpy", py}, {"OpenDKIM", od}} {
		var sels []string
		for _, r := range v.res {
			sels = append(sels, r.Selector)
			if !r.Pass || r.Domain != "contoso.test" {
				t.Errorf("%s: %s: d=%s s=%s does not verify: %s\n%s", name, v.who, r.Domain, r.Selector, r.Detail, data)
			}
		}
		if strings.Join(sels, ",") != strings.Join(selectors, ",") {
			t.Errorf("%s: %s saw signatures %v, want %v", name, v.who, sels, selectors)
		}
	}
}

// crlf turns smtp-sink's LF line ends back into CRLF (the relay sends only CRLF text).
func crlf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// smarthostTOML is the smart host section of the test configuration: one host, no TLS (loopback), logging in.
func smarthostTOML(addr, user, passFile string) string {
	return fmt.Sprintf("[[smarthosts]]\nname = \"isp\"\naddress = %q\ntls = \"none\"\nusername = %q\npassword_file = %q\n", addr, user, passFile)
}

// startDKIMRelay starts a daemon with hostname relay.contoso.test and the given sections.
func startDKIMRelay(t *testing.T, sections string) (*Relay, string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname = "relay.contoso.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
[egress]
ip = "192.0.2.1"
discovery = []
dnsbl = []
port25_probe = ""
[admin]
socket = %q
[queue]
retry_min = "1m"
retry_max = "1m"
`, dir, filepath.Join(dir, "admin.sock"))+sections), "dkim.toml")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	r, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	testkit.Serve(t, "Relay.Run", r.Run)
	return r, r.listeners[0].Addr().String()
}
