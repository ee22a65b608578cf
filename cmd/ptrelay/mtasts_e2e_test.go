package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// The built daemon under recipients' MTA-STS policies (RFC 8461). Policies are served over HTTPS with a
// certificate from a test CA, which the daemon trusts as a system root (SSL_CERT_FILE); the MX hosts are a
// private Postfix; DNS is a real unbound, validating with a test root key (so DANE is on, and the zones below,
// unsigned, are insecure: MTA-STS applies).
//
//	MX hosts    mx1.sts.test 127.0.0.91  STARTTLS, a certificate for its name
//	            mx2.sts.test 127.0.0.92  no STARTTLS
//	            mx3.sts.test 127.0.0.93  STARTTLS, a certificate for another name
//
//	enforce.test     MX mx3 (10), mx1 (20)  enforce, mx1 listed     mx3 skipped, delivered by mx1 over TLS
//	unlisted.test    MX mx1                 enforce, mx9 listed     deferred 4.7.0 (three messages: an alert)
//	nostarttls.test  MX mx2                 enforce, mx2 listed     deferred 4.7.4, never sent in clear
//	testing.test     MX mx2                 testing, mx9 listed     delivered in clear, the log says what failed
//	f404.test, f500.test, redirect.test     MX mx2, record but no policy to fetch: delivered (no policy)
//	outage.test      MX mx1                 enforce, mx1 listed     kept across a restart while the policy
//	                                                                server fails; flush drops it
const stsMX1, stsMX2, stsMX3 = "127.0.0.91", "127.0.0.92", "127.0.0.93"

type stsCase struct {
	domain string
	mx     []string // host names, by preference
	status int      // what the policy server answers: 0 serves policy
	policy string
}

var stsCases = []stsCase{
	{"enforce.test", []string{"mx3.sts.test", "mx1.sts.test"}, 0, "mode: enforce\nmx: mx1.sts.test"},
	{"unlisted.test", []string{"mx1.sts.test"}, 0, "mode: enforce\nmx: mx9.sts.test"},
	{"nostarttls.test", []string{"mx2.sts.test"}, 0, "mode: enforce\nmx: mx2.sts.test"},
	{"testing.test", []string{"mx2.sts.test"}, 0, "mode: testing\nmx: mx9.sts.test"},
	{"f404.test", []string{"mx2.sts.test"}, http.StatusNotFound, ""},
	{"f500.test", []string{"mx2.sts.test"}, http.StatusInternalServerError, ""},
	{"redirect.test", []string{"mx2.sts.test"}, http.StatusFound, ""},
	{"outage.test", []string{"mx1.sts.test"}, 0, "mode: enforce\nmx: mx1.sts.test"},
}

// policyHost is the HTTPS server of every mta-sts.<domain> name. The policy URL has no port (RFC 8461 3.3), so
// it listens on 443, on a loopback address of its own.
type policyHost struct {
	ip string
	mu sync.Mutex
	// status per domain: 0 serves the case's policy
	status map[string]int
	hits   map[string]int
}

func startPolicyHost(t *testing.T, ca *relaytest.CA) *policyHost {
	t.Helper()
	var names []string
	for _, c := range stsCases {
		names = append(names, "mta-sts."+c.domain)
	}
	certFile, keyFile := ca.Issue(t, "mta-sts", relaytest.CertOptions{Hosts: names})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	h := &policyHost{status: map[string]int{}, hits: map[string]int{}}
	var ln net.Listener
	for i := 1; i <= 20 && ln == nil; i++ {
		ip := fmt.Sprintf("127.0.77.%d", i)
		ln, err = tls.Listen("tcp", ip+":443", &tls.Config{Certificates: []tls.Certificate{cert}})
		switch {
		case err == nil:
			h.ip = ip
		case !errors.Is(err, syscall.EADDRINUSE):
			t.Fatalf("policy host: %v", err)
		}
	}
	if ln == nil {
		t.Fatal("policy host: port 443 busy on 127.0.77.1-20")
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain := strings.TrimPrefix(r.Host, "mta-sts.")
		h.mu.Lock()
		h.hits[domain]++
		status := h.status[domain]
		h.mu.Unlock()
		var c *stsCase
		for i := range stsCases {
			if stsCases[i].domain == domain {
				c = &stsCases[i]
			}
		}
		switch {
		case c == nil || r.URL.Path != "/.well-known/mta-sts.txt":
			http.NotFound(w, r)
		case status == http.StatusFound:
			http.Redirect(w, r, "https://www."+domain+"/mta-sts.txt", status)
		case status != 0:
			http.Error(w, "unavailable", status)
		default:
			fmt.Fprintf(w, "version: STSv1\r\n%s\r\nmax_age: 604800\r\n", strings.ReplaceAll(c.policy, "\n", "\r\n"))
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for _, c := range stsCases {
		h.status[c.domain] = c.status
	}
	return h
}

func (h *policyHost) set(domain string, status int) {
	h.mu.Lock()
	h.status[domain] = status
	h.mu.Unlock()
}

func (h *policyHost) fetches(domain string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[domain]
}

// deliveryLine returns the daemon's delivery log lines for rcpt.
func deliveryLines(d *relaytest.Daemon, rcpt string) []string {
	var out []string
	for _, l := range strings.Split(d.Stderr(), "\n") {
		if strings.Contains(l, "msg=delivery") && strings.Contains(l, "to=<"+rcpt+">") {
			out = append(out, l)
		}
	}
	return out
}

var tlsFieldRE = regexp.MustCompile(` tls=([a-z-]+) `)

func TestE2E_MTASTS(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "unbound")
	relaytest.RequireRoot(t) // the Postfix MX, and port 443 for the policy host
	ca := relaytest.NewCA(t, t.TempDir())
	policy := startPolicyHost(t, ca)

	var zones []dnstest.Zone
	hosts := dnstest.Zone{Name: "sts.test.", Records: []string{"mx1.sts.test. A " + stsMX1, "mx2.sts.test. A " + stsMX2,
		"mx3.sts.test. A " + stsMX3}}
	zones = append(zones, hosts)
	var domains []string
	for _, c := range stsCases {
		z := dnstest.Zone{Name: c.domain + ".", Records: []string{
			`_mta-sts.` + c.domain + `. TXT "v=STSv1; id=20260301;"`,
			"mta-sts." + c.domain + ". A " + policy.ip,
		}}
		for i, mx := range c.mx {
			z.Records = append(z.Records, fmt.Sprintf("%s. MX %d %s.", c.domain, 10*(i+1), mx))
		}
		zones = append(zones, z)
		domains = append(domains, c.domain)
	}
	dnsAddr := dnstest.StartValidating(t, zones...)
	mx1Cert, mx1Key := ca.Issue(t, "mx1", relaytest.CertOptions{Hosts: []string{"mx1.sts.test"}})
	mx3Cert, mx3Key := ca.Issue(t, "mx3", relaytest.CertOptions{Hosts: []string{"mx.other.test"}})
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "127.0.0.3:0"})
	mx := relaytest.StartPostfixMX(t, relaytest.PostfixMXOptions{Domains: domains, RelayTo: sink.Addr(), Hosts: []relaytest.MXHost{
		{IP: stsMX1, CertFile: mx1Cert, KeyFile: mx1Key}, {IP: stsMX2}, {IP: stsMX3, CertFile: mx3Cert, KeyFile: mx3Key}}})

	d := startDaemon(t, relaytest.DaemonOptions{
		Config: fmt.Sprintf(`hostname = "relay.sts.test"

[smtp]
listen = [%q]

[routing]
mode = "direct"

[delivery]
port = %d

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

[alerts]
hold = "1m"
`, loopbackAddr(t, "127.0.0.1"), mx.Port(), dnsAddr),
		// The daemon trusts the test CA as its system roots, for the policy host and the MX certificates.
		Env: []string{"SSL_CERT_FILE=" + ca.CertFile},
	})

	ids := map[string]string{}
	for _, c := range stsCases {
		ids[c.domain] = inject(t, d.Addr(), "a@example.com", "x@"+c.domain, "sts-"+c.domain)
	}
	ids["unlisted2"] = inject(t, d.Addr(), "a@example.com", "y@unlisted.test", "sts-unlisted2")
	ids["unlisted3"] = inject(t, d.Addr(), "a@example.com", "z@unlisted.test", "sts-unlisted3")
	deferred := []string{ids["unlisted.test"], ids["unlisted2"], ids["unlisted3"], ids["nostarttls.test"]}
	var delivered []string
	for _, c := range stsCases {
		if c.domain != "unlisted.test" && c.domain != "nostarttls.test" {
			delivered = append(delivered, ids[c.domain])
		}
	}
	waitStates(t, d, "gone", delivered...)
	waitDeferred(t, d, deferred...)

	// What reached the MX, and how.
	msgs := sink.WaitMessages(t, len(delivered), 30*time.Second)
	wantTLS := map[string]bool{"enforce.test": true, "outage.test": true}
	for _, c := range stsCases {
		m := bySubject(msgs, "sts-"+c.domain)
		if c.domain == "unlisted.test" || c.domain == "nostarttls.test" {
			if m != nil {
				t.Errorf("%s: delivered although its policy forbids it", c.domain)
			}
			continue
		}
		if m == nil {
			t.Errorf("%s: not delivered: %v", c.domain, subjects(msgs))
			continue
		}
		r := received(m)
		if tlsUsed := strings.Contains(r, "with ESMTPS"); tlsUsed != wantTLS[c.domain] {
			t.Errorf("%s: TLS %v, want %v: %s", c.domain, tlsUsed, wantTLS[c.domain], r)
		}
	}
	// The delivery line is written just after the outcome is recorded, which is after the MX has the message.
	testkit.WaitFor(t, 10*time.Second, "a delivery line for every recipient", func() bool {
		for _, c := range stsCases {
			if len(deliveryLines(d, "x@"+c.domain)) == 0 {
				return false
			}
		}
		return true
	})
	if l := deliveryLines(d, "x@enforce.test"); len(l) != 1 || !strings.Contains(l[0], "relay=mx1.sts.test["+stsMX1+"]") {
		t.Errorf("enforce.test: not delivered by mx1: %q", l)
	}
	if log := mx.Log(); strings.Contains(log, "nostarttls.test") || strings.Contains(log, "unlisted.test") {
		t.Errorf("the MX saw a connection or mail it must not have:\n%s", log)
	}

	// The log's tls= level of each attempt.
	for rcpt, want := range map[string]string{"x@enforce.test": "mta-sts", "x@unlisted.test": "mta-sts",
		"x@nostarttls.test": "mta-sts", "x@testing.test": "may", "x@f404.test": "may", "x@outage.test": "mta-sts"} {
		lines := deliveryLines(d, rcpt)
		if len(lines) != 1 || tlsFieldRE.FindStringSubmatch(lines[0]) == nil || tlsFieldRE.FindStringSubmatch(lines[0])[1] != want {
			t.Errorf("%s: delivery lines %q; want one with tls=%s", rcpt, lines, want)
		}
	}
	if !strings.Contains(d.Stderr(), `msg="MTA-STS testing: the policy would not allow this MX host" component=delivery domain=testing.test mx=mx2.sts.test`) {
		t.Errorf("testing mode did not log what enforce would have refused:\n%s", tailLog(d))
	}

	// queue show names the policy that deferred each recipient.
	for id, says := range map[string]string{ids["unlisted.test"]: "4.7.0 MTA-STS policy of unlisted.test (enforce, id 20260301) does not list MX host mx1.sts.test",
		ids["nostarttls.test"]: "4.7.4 MTA-STS policy of nostarttls.test (enforce, id 20260301) requires verified TLS with mx2.sts.test: the server does not offer STARTTLS"} {
		out := mustPtrelay(t, d, "queue", "show", id)
		if !strings.Contains(out, "tls=mta-sts") || !strings.Contains(out, says) {
			t.Errorf("queue show %s lacks the policy:\n%s", id, out)
		}
	}
	// Three recipients deferred at one domain: the tls.policy alert condition holds.
	testkit.WaitFor(t, 10*time.Second, "the tls.policy alert", func() bool {
		out, _ := ptrelay(t, d, "alerts", "list")
		return strings.Contains(out, "tls.policy/unlisted.test") && strings.Contains(out, "its MTA-STS policy fails")
	})

	// status: DANE on (the validating unbound), the policies cached, the TLS-RPT counts.
	st := mustPtrelay(t, d, "status")
	for _, want := range []string{"DANE:          on:", "MTA-STS:       on: 5 policies cached", "enforce.test",
		"sts  1 ok, 1 failed (validation-failure 1)", "nostarttls.test"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}
	// check -domain: the recipient-side view.
	out, _ := ptrelay(t, d, "check", "-domain", "enforce.test")
	for _, want := range []string{"ok      DNSSEC validation (for DANE)", "Mail to enforce.test (outbound TLS policy):",
		"warn    MTA-STS of enforce.test: mode enforce, id 20260301", "MX hosts not listed, never used: mx3.sts.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("check -domain lacks %q:\n%s", want, out)
		}
	}

	// The policy server goes down; after a restart the cached policy still applies (tls=mta-sts).
	policy.set("outage.test", http.StatusServiceUnavailable)
	d.Restart()
	inject(t, d.Addr(), "a@example.com", "after@outage.test", "sts-outage-restart")
	sink.WaitMessages(t, len(delivered)+1, 30*time.Second)
	if l := deliveryLines(d, "after@outage.test"); len(l) != 1 || !strings.Contains(l[0], " tls=mta-sts ") {
		t.Errorf("after the restart: %q; want delivered under the cached policy", l)
	}
	if n := policy.fetches("outage.test"); n != 1 {
		t.Errorf("outage.test's policy was fetched %d times; want once (then read from the queue database)", n)
	}
	online := mustPtrelay(t, d, "mtasts", "show", "outage.test")
	if !strings.Contains(online, "outage.test  mode enforce  id 20260301") || !strings.Contains(online, "mx:       mx1.sts.test") {
		t.Errorf("mtasts show outage.test:\n%s", online)
	}
	// Flushed, with the server still down: no policy, so the next message goes as delivery.tls says.
	if out := mustPtrelay(t, d, "mtasts", "flush", "outage.test"); !strings.Contains(out, "Dropped 1 cached MTA-STS entry (outage.test)") {
		t.Errorf("flush: %s", out)
	}
	if out := mustPtrelay(t, d, "mtasts", "show", "outage.test"); out != "No MTA-STS policy is cached.\n" {
		t.Errorf("after the flush: %s", out)
	}
	// A session kept open for more mail to outage.test would carry the next message under the policy it was
	// opened with: wait until the MX saw every session end.
	testkit.WaitFor(t, 10*time.Second, "the MX sessions to end", func() bool {
		log := mx.Log()
		return strings.Count(log, "]: connect from") == strings.Count(log, "]: disconnect from")
	})
	inject(t, d.Addr(), "a@example.com", "flushed@outage.test", "sts-outage-flushed")
	sink.WaitMessages(t, len(delivered)+2, 30*time.Second)
	if l := deliveryLines(d, "flushed@outage.test"); len(l) != 1 || !strings.Contains(l[0], " tls=may ") {
		t.Errorf("after the flush: %q; want delivered without a policy", l)
	}
	online = mustPtrelay(t, d, "mtasts", "show", "enforce.test")
	d.Stop()
	offline := mustPtrelay(t, d, "mtasts", "show", "enforce.test")
	if online != offline || !strings.Contains(offline, "enforce.test  mode enforce") {
		t.Errorf("mtasts show differs online and offline:\n%s\n---\n%s", online, offline)
	}
	if out := mustPtrelay(t, d, "mtasts", "flush"); !strings.Contains(out, "Dropped 4 cached MTA-STS entries (all domains)") {
		t.Errorf("offline flush: %s", out)
	}
	if out := mustPtrelay(t, d, "mtasts", "show"); out != "No MTA-STS policy is cached.\n" {
		t.Errorf("after the flush: %s", out)
	}

	// The same validating resolver, whose AD bit this configuration does not believe: DANE is off, and status
	// and check say why, with the unbound lines that fix it.
	off := startDaemon(t, relaytest.DaemonOptions{Config: fmt.Sprintf(`hostname = "relay.sts.test"
[smtp]
listen = [%q]
[dns]
resolvers = [%q]
trust_ad = "never"
[egress]
ip = "192.0.2.10"
dnsbl = []
port25_probe = ""
`, loopbackAddr(t, "127.0.0.1"), dnsAddr)})
	st = mustPtrelay(t, off, "status")
	if !strings.Contains(st, `DANE:          off: dns.trust_ad is "never"`) || !strings.Contains(st, "apt-get install unbound") {
		t.Errorf("status with trust_ad = never:\n%s", st)
	}
	out, _ = ptrelay(t, off, "check")
	if !strings.Contains(out, `warn    DNSSEC validation (for DANE): DANE is off: dns.trust_ad is "never"`) ||
		!strings.Contains(out, `resolvers = ["127.0.0.1:53"]`) {
		t.Errorf("check with trust_ad = never:\n%s", out)
	}
}
