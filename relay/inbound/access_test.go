package inbound

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
)

func TestInbound_AllowedClientQueues(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	caps := d.ehlo("SBS2003.contoso.local")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SIZE 1000000", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"} {
		if !strings.Contains(caps, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	for _, never := range []string{"XEXCH50", "X-EXPS", "X-LINK2STATE", "BINARYMIME", "STARTTLS"} {
		if strings.Contains(caps, never) {
			t.Errorf("EHLO advertises %s:\n%s", never, caps)
		}
	}
	d.send("MAIL FROM:<a@contoso.com> SIZE=100 BODY=8BITMIME AUTH=<> RET=HDRS ENVID=abc+2Bdef")
	d.expect(250)
	d.send("RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.org")
	d.expect(250)
	d.send("RCPT TO:<c@example.net>")
	d.expect(250)
	d.send("DATA")
	d.expect(354)
	d.raw("Subject: hi\r\n\r\nbody \xc3\xa9\r\n.\r\n")
	id := queuedID(t, d.expect(250))

	ms := ts.messages()
	if len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("queue holds %d messages, want 1 with ID %s", len(ms), id)
	}
	m := ms[0]
	env := m.Envelope
	if env.From != "a@contoso.com" || env.BodyType != "8BITMIME" || env.Ret != "HDRS" || env.EnvID != "abc+def" ||
		env.ClientHelo != "SBS2003.contoso.local" || !strings.HasPrefix(env.ClientAddr, "127.0.0.1:") || env.Session == "" {
		t.Errorf("envelope = %+v", env)
	}
	if len(m.Recipients) != 2 || m.Recipients[0].Addr != "b@example.org" || m.Recipients[1].Addr != "c@example.net" {
		t.Fatalf("recipients = %+v", m.Recipients)
	}
	r0 := m.Recipients[0]
	if strings.Join(r0.Notify, ",") != "FAILURE,DELAY" || r0.ORcpt != "RFC822;b@example.org" || r0.State != queue.StateQueued {
		t.Errorf("recipient 0 = %+v", r0)
	}
	body := string(m.body)
	if !strings.HasPrefix(body, "Received: from SBS2003.contoso.local") || !strings.Contains(body, "id "+env.Session) {
		t.Errorf("Received field missing or wrong:\n%s", body)
	}
	if !strings.Contains(body, "\r\nMessage-ID: <") || !strings.Contains(body, "\r\nDate: ") || !strings.HasSuffix(body, "\r\n\r\nbody \xc3\xa9\r\n") {
		t.Errorf("stored body:\n%q", body)
	}
	if got := ts.hooks.accepted; len(got) != 1 || got[0] != id {
		t.Errorf("OnAccepted saw %v", got)
	}
}

// The null sender (Exchange NDRs) from an allowed client is relayed.
func TestInbound_NullSender(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("ex2010.contoso.local")
	code, text := d.sendMessage("", []string{"someone@example.org"}, "Subject: Undeliverable\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("null sender: %q", text)
	}
	if ms := ts.messages(); len(ms) != 1 || ms[0].Envelope.From != "" {
		t.Fatalf("queue: %+v", ms)
	}
}

// addressTricks are forms that some MTAs deliver locally or route on their own. ptrelay relays every one of them
// to the domain after the last @, or denies it, by the same rule.
var addressTricks = []struct{ rcpt, stored string }{
	{"<victim@example.org>", "victim@example.org"},
	{"<victim%example.org@relay.test>", "victim%example.org@relay.test"},
	{"<example.org!victim@relay.test>", "example.org!victim@relay.test"},
	{"<@relay.test:victim@example.org>", "victim@example.org"},
	{"<@a.test,@relay.test:victim@example.org>", "victim@example.org"},
	{`<"victim@example.org"@relay.test>`, `"victim@example.org"@relay.test`},
	{`<"victim%example.org"@relay.test>`, "victim%example.org@relay.test"},
	{`<"vic tim"@example.org>`, `"vic tim"@example.org`},
	{"<victim@[127.0.0.1]>", "victim@[127.0.0.1]"},
	{"<victim@[IPv6:::1]>", "victim@[IPv6:::1]"},
	{"<postmaster@relay.test>", "postmaster@relay.test"},
	{"<root@localhost>", "root@localhost"},
	{"<VICTIM@EXAMPLE.ORG>", "VICTIM@EXAMPLE.ORG"},
}

// A client outside allowed_networks that did not authenticate gets 554 for every address, whatever its form.
// It dials from 127.0.0.5 while only 127.0.0.1/32 may relay.
func TestInbound_RelayDeniedForEveryAddressForm(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dialFrom(t, ts.addr, "127.0.0.5")
	d.ehlo("outsider.example")
	for _, sender := range []string{"a@example.com", ""} {
		d.send(fmt.Sprintf("MAIL FROM:<%s>", sender))
		d.expect(250)
		for _, tr := range addressTricks {
			d.send("RCPT TO:" + tr.rcpt)
			text := d.expect(554)
			want := "554 5.7.1 <" + tr.stored + ">: Relay access denied (session "
			if !strings.HasPrefix(text, want) {
				t.Errorf("RCPT TO:%s: got %q, want prefix %q", tr.rcpt, text, want)
			}
		}
		// Addresses without a domain cannot be relayed either.
		for _, rcpt := range []string{"<postmaster>", "<example.org!victim>", "<victim>"} {
			d.send("RCPT TO:" + rcpt)
			if code, text := d.reply(); code < 500 {
				t.Errorf("RCPT TO:%s: %q, want a 5xx", rcpt, text)
			}
		}
		d.send("DATA")
		if code, text := d.reply(); code < 500 {
			t.Errorf("DATA after refused recipients: %q", text)
		}
		d.send("RSET")
		d.expect(250)
	}
	if n := ts.hooks.refusedCount(RefusedRelay); n != 2*len(addressTricks) {
		t.Errorf("OnRefused(relay_denied) %d times, want %d", n, 2*len(addressTricks))
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

// The same forms from an allowed client are queued as plain remote recipients.
func TestInbound_AddressFormsRelayedAsIs(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTP.MaxRecipients = 100
	ts := startServer(t, cfg, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("app.contoso.local")
	d.send("MAIL FROM:<a@contoso.com>")
	d.expect(250)
	for _, tr := range addressTricks {
		d.send("RCPT TO:" + tr.rcpt)
		d.expect(250)
	}
	d.send("DATA")
	d.expect(354)
	d.raw("Subject: x\r\n\r\nx\r\n.\r\n")
	d.expect(250)
	ms := ts.messages()
	if len(ms) != 1 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
	for i, tr := range addressTricks {
		if got := ms[0].Recipients[i].Addr; got != tr.stored {
			t.Errorf("RCPT TO:%s stored as %q, want %q", tr.rcpt, got, tr.stored)
		}
	}
}

func TestInbound_AddressSyntax(t *testing.T) {
	ts := startServer(t, nil, serverOpt{})
	d := dial(t, ts.addr)
	d.ehlo("app.contoso.local")
	bad := []string{"<a@b@>", "<a@-bad.example>", "<a@bad-.example>", "<a@foo..example>", "<a@[999.1.1.1]>",
		"<a@[IPv6:zz]>", "<a@exa mple.org>", "<a@ex\x01ample.org>", "<a\x01b@example.org>",
		"<a@ex(ample.org>", "<" + strings.Repeat("x", 65) + "@example.org>", "<a@" + strings.Repeat("x", 64) + ".org>"}
	d.send("MAIL FROM:<a@contoso.com>")
	d.expect(250)
	for _, rcpt := range bad {
		d.send("RCPT TO:" + rcpt)
		if code, text := d.reply(); code != 501 {
			t.Errorf("RCPT TO:%s: %q, want 501", rcpt, text)
		}
	}
	d.send("RCPT TO:<j\xc3\xb6rg@example.org>")
	d.expect(553) // non-ASCII without SMTPUTF8
	d.send("RSET")
	d.expect(250)
	d.send("MAIL FROM:<bad@-x.example>")
	if text := d.expect(501); !strings.Contains(text, "5.1.7") {
		t.Errorf("bad sender: %q", text)
	}
	d.send("MAIL FROM:<scanner>")
	d.expect(501)
	d.send("MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8")
	d.expect(250)
	d.send("RCPT TO:<m\xc3\xbcller@b\xc3\xbccher.example>")
	d.expect(250)
}

// IPv6 loopback: ::1 is allowed by ::1/128 and relays; without it, ::1 may not relay unauthenticated but, being
// loopback, is offered AUTH in clear.
func TestInbound_IPv6Loopback(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		testkit.Missing(t, "test needs the IPv6 loopback address ::1: "+err.Error())
	}
	l.Close()
	for _, allowed := range []string{"::1/128", "127.0.0.1/32"} {
		cfg := testConfig(t)
		cfg.SMTP.AllowedNetworks = []string{allowed}
		ts := startServer(t, cfg, serverOpt{listen: "[::1]:0"})
		d := dial(t, ts.addr)
		if caps := d.ehlo("v6.contoso.local"); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
			t.Errorf("::1 is loopback: AUTH must be offered:\n%s", caps)
		}
		d.send("MAIL FROM:<a@contoso.com>", "RCPT TO:<b@example.org>")
		d.expect(250)
		if allowed == "::1/128" {
			d.expect(250)
			d.send("DATA")
			d.expect(354)
			d.raw("Subject: v6\r\n\r\nx\r\n.\r\n")
			d.expect(250)
			if ms := ts.messages(); len(ms) != 1 || !strings.HasPrefix(ms[0].Envelope.ClientAddr, "[::1]:") {
				t.Fatalf("queue: %+v", ms)
			}
		} else {
			d.expect(554)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.0/24": "192.168.1.0/24", "192.168.1.77/24": "192.168.1.0/24", "10.0.0.5": "10.0.0.5/32",
		"::1": "::1/128", "2001:db8::/32": "2001:db8::/32", " 127.0.0.0/8 ": "127.0.0.0/8", "::ffff:10.1.2.3": "10.1.2.3/32",
	} {
		p, err := parseNetwork(in)
		if err != nil || p.String() != want {
			t.Errorf("parseNetwork(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "lan", "10.0.0.0/33", "10.0.0"} {
		if _, err := parseNetwork(bad); err == nil {
			t.Errorf("parseNetwork(%q) accepted", bad)
		}
	}
	cfg := testConfig(t)
	cfg.SMTP.AllowedNetworks = []string{"192.168.1.0/24", "office"}
	if _, err := newServer(cfg, nil, testLogger(t), Hooks{}); err == nil || !strings.Contains(err.Error(), "smtp.allowed_networks") {
		t.Fatalf("bad allowed_networks: %v", err)
	}
}
