package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// The direct route's TLS against real mail exchangers: a Postfix MX instance with four hosts, found through a
// real unbound resolving recursively from dnsmasq, the domains' authority:
//
//	valid.test      STARTTLS, a certificate for its name from the test CA
//	wrongname.test  STARTTLS, a certificate from the test CA for another name
//	expired.test    STARTTLS, a certificate from the test CA that has expired
//	plain.test      no STARTTLS
//
// The daemon trusts the test CA as a system root (SSL_CERT_FILE), as it trusts the public CAs in production.
var mxTLSCases = []struct {
	domain string
	ip     string
	tls    bool // the MX offers STARTTLS
	valid  bool // and its certificate verifies for the MX name
	fail   string
}{
	{"valid.test", "127.0.0.61", true, true, ""},
	{"wrongname.test", "127.0.0.62", true, false, "certificate is valid for mx.other.test, not mx.wrongname.test"},
	{"expired.test", "127.0.0.63", true, false, "certificate has expired"},
	{"plain.test", "127.0.0.64", false, false, "does not offer STARTTLS"},
}

type mxTLSEnv struct {
	sink   *relaytest.Sink
	mx     *relaytest.Postfix
	dns    string
	caFile string
}

func startMXTLSEnv(t *testing.T) *mxTLSEnv {
	t.Helper()
	relaytest.Require(t, "smtp-sink", "postfix", "unbound", "dnsmasq")
	relaytest.RequireRoot(t)
	ca := relaytest.NewCA(t, t.TempDir())
	past := time.Now().Add(-30 * 24 * time.Hour)
	var hosts []relaytest.MXHost
	var records, domains []string
	for _, c := range mxTLSCases {
		name := "mx." + c.domain
		records = append(records, c.domain+". MX 10 "+name+".", name+". A "+c.ip)
		domains = append(domains, c.domain)
		h := relaytest.MXHost{IP: c.ip}
		switch c.domain {
		case "valid.test":
			h.CertFile, h.KeyFile = ca.Issue(t, "valid", relaytest.CertOptions{Hosts: []string{name}})
		case "wrongname.test":
			h.CertFile, h.KeyFile = ca.Issue(t, "wrongname", relaytest.CertOptions{Hosts: []string{"mx.other.test"}})
		case "expired.test":
			h.CertFile, h.KeyFile = ca.Issue(t, "expired", relaytest.CertOptions{Hosts: []string{name},
				NotBefore: past, NotAfter: past.Add(24 * time.Hour)})
		}
		hosts = append(hosts, h)
	}
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	return &mxTLSEnv{
		sink:   sink,
		mx:     relaytest.StartPostfixMX(t, relaytest.PostfixMXOptions{Hosts: hosts, Domains: domains, RelayTo: sink.Addr()}),
		dns:    dnstest.StartRecursive(t, records...),
		caFile: ca.CertFile,
	}
}

// daemon runs ptrelay delivering directly with delivery.tls = mode; retries are an hour away, so each message
// gets exactly one attempt.
func (e *mxTLSEnv) daemon(t *testing.T, mode string) *relaytest.Daemon {
	t.Helper()
	return startDaemon(t, relaytest.DaemonOptions{
		Config: fmt.Sprintf(`hostname = "relay.mxtls.test"

[smtp]
listen = [%q]

[routing]
mode = "direct"

[delivery]
port = %d
tls = %q

[queue]
retry_min = "1h"
retry_max = "2h"

[dns]
resolvers = [%q]
timeout = "2s"

[egress]
ip = "192.0.2.10"
whoami = ["127.0.0.1:9"]
dnsbl = []
port25_probe = "127.0.0.1:9"
`, loopbackAddr(t, "127.0.0.1"), e.mx.Port(), mode, e.dns),
		Env: []string{"SSL_CERT_FILE=" + e.caFile},
	})
}

// received is the Received field the MX added (the sink adds none).
func received(m *relaytest.SinkMessage) string { return m.Header().Get("Received") }

// TestMXTLS_Opportunistic: every exchanger that offers STARTTLS gets TLS, whatever its certificate (an
// unverified certificate still beats plaintext, RFC 7435), and the one that does not gets the mail in clear.
func TestMXTLS_Opportunistic(t *testing.T) {
	t.Parallel()
	e := startMXTLSEnv(t)
	d := e.daemon(t, "opportunistic")
	var ids []string
	for _, c := range mxTLSCases {
		ids = append(ids, inject(t, d.Addr(), "a@example.com", "x@"+c.domain, "mxtls-opportunistic-"+c.domain))
	}
	waitStates(t, d, "gone", ids...)
	msgs := e.sink.WaitMessages(t, len(mxTLSCases), 30*time.Second)
	for _, c := range mxTLSCases {
		m := bySubject(msgs, "mxtls-opportunistic-"+c.domain)
		if m == nil || len(m.To) != 1 || m.To[0] != "x@"+c.domain {
			t.Errorf("%s: not delivered through its MX: %v", c.domain, subjects(msgs))
			continue
		}
		r := received(m)
		t.Logf("%s: Received: %s", c.domain, r)
		if !strings.Contains(r, "by mx.test (Postfix)") || !strings.Contains(r, "relay.mxtls.test") {
			t.Errorf("%s: not received by the Postfix MX from the relay: %s", c.domain, r)
		}
		if gotTLS := strings.Contains(r, "with ESMTPS") && strings.Contains(r, "using TLS"); gotTLS != c.tls {
			t.Errorf("%s: TLS %v, want %v: %s", c.domain, gotTLS, c.tls, r)
		}
	}
}

// TestMXTLS_Verify: with delivery.tls = "verify" only the exchanger whose certificate verifies for its MX name
// gets the mail; a wrong name, an expired certificate and a missing STARTTLS defer the mail (4.7.5, the reason
// in the history) and nothing is sent to those hosts.
func TestMXTLS_Verify(t *testing.T) {
	t.Parallel()
	e := startMXTLSEnv(t)
	d := e.daemon(t, "verify")
	ids := map[string]string{}
	for _, c := range mxTLSCases {
		ids[c.domain] = inject(t, d.Addr(), "a@example.com", "x@"+c.domain, "mxtls-verify-"+c.domain)
	}
	// Each message gets one attempt: wait until every one is delivered (gone) or deferred, then compare.
	var q map[string]*queue.Message
	testkit.WaitForExplained(t, 30*time.Second, func() string { return "undecided messages:\n" + tailLog(d) }, func() bool {
		q = queueList(t, d)
		for _, id := range ids {
			if s := states(q[id]); s != "gone" && s != "deferred" {
				return false
			}
		}
		return true
	})
	for _, c := range mxTLSCases {
		want := "deferred"
		if c.valid {
			want = "gone"
		}
		if got := states(q[ids[c.domain]]); got != want {
			t.Errorf("%s: %s, want %s", c.domain, got, want)
			continue
		}
		if c.valid {
			continue
		}
		a, ok := q[ids[c.domain]].Recipients[0].LastAttempt()
		t.Logf("%s: %s %s %s", c.domain, a.Relay, a.Enhanced, a.Text)
		if !ok || a.Enhanced != "4.7.5" || !strings.Contains(a.Text, c.fail) || !strings.HasPrefix(a.Relay, "mx."+c.domain+"["+c.ip+"]") {
			t.Errorf("%s: last attempt %+v, want 4.7.5 at mx.%s[%s] saying %q", c.domain, a, c.domain, c.ip, c.fail)
		}
	}
	// Every attempt is over (delivered or deferred): the sink holds what was delivered, and only that.
	msgs := e.sink.WaitMessages(t, 1, 30*time.Second)
	if got := subjects(e.sink.Messages()); len(got) != 1 || got[0] != "mxtls-verify-valid.test" {
		t.Fatalf("sink has %v, want only the message for valid.test", got)
	}
	if r := received(&msgs[0]); !strings.Contains(r, "with ESMTPS") || !strings.Contains(r, "using TLS") {
		t.Errorf("valid.test: not received over TLS: %s", r)
	}
	if log := e.mx.Log(); strings.Contains(log, "wrongname.test") || strings.Contains(log, "expired.test") ||
		strings.Contains(log, "plain.test") {
		t.Errorf("a message for a host that failed verification reached the MX:\n%s", log)
	}
}
