package relay_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/internal/testkit"
	"ptrelay/relay"
	"ptrelay/relay/admin"
	"ptrelay/relay/relaytest"
)

// Auto routing through the whole daemon (relay.New + Run in-process, so -race sees it): a real unbound serves the
// egress address's PTR, its forward name, a DNSBL zone and the recipient domain's MX; smtp-sink plays the
// recipient's MX and the smart host; the port-25 probe knocks at the MX sink. Nothing leaves the machine.
//
// Egress addresses (egress.ip): .51 passes every check; .52 has no PTR.
const (
	goodEgress = "127.0.0.51"
	noPTR      = "127.0.0.52"
	mxIP       = "127.0.0.41"
	smarthost  = "127.0.0.42"
)

// egressZones are the scenario's records.
func egressZones(extra ...string) []string {
	return append([]string{
		"51.0.0.127.in-addr.arpa. PTR relay.good.test.",
		"relay.good.test. A " + goodEgress,
		"good.test. TXT \"v=spf1 ip4:" + goodEgress + " ip4:" + smarthost + " -all\"",
		// RFC 5782 2.2: a working list lists 127.0.0.2; the checker asks before it trusts a "not listed".
		"2.0.0.127.bl.test. A 127.0.0.2",
		"dest.test. MX 10 mx.dest.test.",
		"mx.dest.test. A " + mxIP,
	}, extra...)
}

type egressEnv struct {
	dns  string
	mx   *relaytest.Sink // the recipient domain's MX, on delivery.port
	sh   *relaytest.Sink // the smart host
	dir  string
	logs *testkit.Buffer
}

func startEgressEnv(t *testing.T, mxOpt relaytest.SinkOptions, zones ...string) *egressEnv {
	t.Helper()
	relaytest.Require(t, "smtp-sink", "unbound")
	if mxOpt.Addr == "" {
		mxOpt.Addr = mxIP + ":0"
	}
	if mxOpt.Hostname == "" {
		mxOpt.Hostname = "mx.dest.test"
	}
	return &egressEnv{
		dns:  dnstest.StartUnbound(t, egressZones(zones...)...),
		mx:   relaytest.StartSink(t, mxOpt),
		sh:   relaytest.StartSink(t, relaytest.SinkOptions{Addr: smarthost + ":0", Hostname: "smtp.isp.test"}),
		dir:  t.TempDir(),
		logs: &testkit.Buffer{},
	}
}

// config is the daemon's configuration with egress.ip = egressIP and routing.mode = mode.
func (e *egressEnv) config(t *testing.T, egressIP, mode string) *config.Config {
	t.Helper()
	return e.configEgress(t, fmt.Sprintf("ip = %q\ndiscovery = []", egressIP), mode)
}

// configEgress is config with the [egress] keys that find the address given as TOML.
func (e *egressEnv) configEgress(t *testing.T, egress, mode string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname = "relay.good.test"
data_dir = %q
[smtp]
listen = ["127.0.0.1:0"]
[[smarthosts]]
name = "isp"
address = %q
tls = "none"
[routing]
mode = %q
[delivery]
port = %d
[queue]
retry_min = "1m"
retry_max = "1m"
[dns]
resolvers = [%q]
timeout = "2s"
[egress]
%s
dnsbl = ["bl.test"]
port25_probe = %q
[admin]
socket = %q
metrics_listen = "127.0.0.1:0"
`, e.dir, e.sh.Addr(), mode, e.mx.Port(), e.dns, egress, e.mx.Addr(), filepath.Join(e.dir, "admin.sock"))), "egress-e2e.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs the daemon until the test ends and returns it with its SMTP address.
func (e *egressEnv) start(t *testing.T, cfg *config.Config) (*relay.Relay, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := relay.New(cfg, relay.Options{Log: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the daemon stopped (cleanups run last in, first out)
		if t.Failed() {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	testkit.Serve(t, "Relay.Run", r.Run)
	var addr string
	testkit.WaitFor(t, 20*time.Second, "the SMTP listener in status", func() bool {
		for _, l := range e.status(t).Listeners {
			if a, ok := strings.CutPrefix(l, "smtp "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	return r, addr
}

// status asks the running daemon over its admin socket, as `ptrelay status` does.
func (e *egressEnv) status(t *testing.T) admin.Status {
	t.Helper()
	c, err := admin.Dial(filepath.Join(e.dir, "admin.sock"))
	if err != nil {
		return admin.Status{}
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return admin.Status{}
	}
	return st
}

// verdict is the status's egress address and verdict of family ("ipv4", "ipv6").
func (e *egressEnv) verdict(t *testing.T, family string) (ip, verdict string) {
	for _, es := range e.status(t).Egress {
		if es.Family == family {
			return es.IP, es.Verdict
		}
	}
	return "", ""
}

// waitVerdict waits for the IPv4 egress ip to have verdict.
func (e *egressEnv) waitVerdict(t *testing.T, ip, verdict string) {
	t.Helper()
	e.waitFamilyVerdict(t, "ipv4", ip, verdict)
}

func (e *egressEnv) waitFamilyVerdict(t *testing.T, family, ip, verdict string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, family+" egress "+ip+" "+verdict, func() bool {
		gotIP, got := e.verdict(t, family)
		return gotIP == ip && got == verdict
	})
}

// send submits one message to the relay the way the internal server does.
func send(t *testing.T, addr, rcpt, subject string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "From: a@good.test\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject +
		"@good.test>\r\n\r\nHello from " + subject + ".\r\n"
	if err := c.SendMail("a@good.test", []string{rcpt}, strings.NewReader(msg)); err != nil {
		t.Fatalf("relay refused %s: %v", subject, err)
	}
	_ = c.Quit()
}

// subjects lists the Subject of every message a sink holds.
func subjects(s *relaytest.Sink) []string {
	var out []string
	for _, m := range s.Messages() {
		out = append(out, m.Header().Get("Subject"))
	}
	return out
}

func waitSubject(t *testing.T, s *relaytest.Sink, who, subject string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, who+" receiving "+subject, func() bool {
		for _, got := range subjects(s) {
			if got == subject {
				return true
			}
		}
		return false
	})
}

func hasSubject(s *relaytest.Sink, subject string) bool {
	for _, got := range subjects(s) {
		if got == subject {
			return true
		}
	}
	return false
}

func TestEgressE2E_GoodVerdictDeliversDirect(t *testing.T) {
	e := startEgressEnv(t, relaytest.SinkOptions{})
	_, addr := e.start(t, e.config(t, goodEgress, "auto"))
	e.waitVerdict(t, goodEgress, "direct-ok")
	send(t, addr, "b@dest.test", "good-1")
	waitSubject(t, e.mx, "the MX", "good-1")
	m := e.mx.Messages()[0]
	if m.From != "a@good.test" || len(m.To) != 1 || m.To[0] != "b@dest.test" || m.Helo != "relay.good.test" {
		t.Errorf("the MX got %q -> %v with EHLO %q", m.From, m.To, m.Helo)
	}
	if n := e.sh.MessageCount(); n != 0 {
		t.Errorf("the smart host got %d messages with a direct-ok verdict: %v", n, subjects(e.sh))
	}
	// The relay logs the delivery after the MX's 250, which the MX's dump precedes: wait for the line.
	if !testkit.Eventually(10*time.Second, func() bool { return strings.Contains(e.logs.String(), "route=direct") }) {
		t.Errorf("no route=direct delivery line in the log")
	}
}

func TestEgressE2E_NoPTRGoesViaSmarthost(t *testing.T) {
	e := startEgressEnv(t, relaytest.SinkOptions{})
	_, addr := e.start(t, e.config(t, noPTR, "auto"))
	e.waitVerdict(t, noPTR, "smarthost")
	send(t, addr, "b@dest.test", "noptr-1")
	waitSubject(t, e.sh, "the smart host", "noptr-1")
	if n := e.mx.MessageCount(); n != 0 {
		t.Errorf("the MX got %d messages although the egress address has no PTR: %v", n, subjects(e.mx))
	}
	var reasons string
	for _, es := range e.status(t).Egress {
		if es.Family == "ipv4" {
			reasons = strings.Join(es.Reasons, "; ")
		}
	}
	if !strings.Contains(strings.ToLower(reasons), "ptr") {
		t.Errorf("status gives no PTR reason for the smarthost verdict: %q", reasons)
	}
}

// A reload (what SIGHUP does in `ptrelay serve`) with another egress.ip switches the route of the next message,
// and of mail already queued, without a restart; and back.
func TestEgressE2E_ReloadSwitchesRoute(t *testing.T) {
	e := startEgressEnv(t, relaytest.SinkOptions{})
	r, addr := e.start(t, e.config(t, goodEgress, "auto"))
	e.waitVerdict(t, goodEgress, "direct-ok")
	send(t, addr, "b@dest.test", "switch-1")
	waitSubject(t, e.mx, "the MX", "switch-1")

	if err := r.Reload(e.config(t, noPTR, "auto")); err != nil {
		t.Fatal(err)
	}
	e.waitVerdict(t, noPTR, "smarthost")
	send(t, addr, "b@dest.test", "switch-2")
	waitSubject(t, e.sh, "the smart host", "switch-2")
	if hasSubject(e.mx, "switch-2") {
		t.Errorf("the MX got switch-2 after the egress address lost its PTR")
	}

	if err := r.Reload(e.config(t, goodEgress, "auto")); err != nil {
		t.Fatal(err)
	}
	e.waitVerdict(t, goodEgress, "direct-ok")
	send(t, addr, "b@dest.test", "switch-3")
	waitSubject(t, e.mx, "the MX", "switch-3")
	if hasSubject(e.sh, "switch-1") || hasSubject(e.sh, "switch-3") {
		t.Errorf("the smart host got direct-ok mail: %v", subjects(e.sh))
	}
}

// A listing in a DNSBL zone makes the verdict smarthost even with a perfect PTR.
func TestEgressE2E_DNSBLListingGoesViaSmarthost(t *testing.T) {
	e := startEgressEnv(t, relaytest.SinkOptions{}, "51.0.0.127.bl.test. A 127.0.0.2")
	_, addr := e.start(t, e.config(t, goodEgress, "auto"))
	e.waitVerdict(t, goodEgress, "smarthost")
	send(t, addr, "b@dest.test", "listed-1")
	waitSubject(t, e.sh, "the smart host", "listed-1")
	if n := e.mx.MessageCount(); n != 0 {
		t.Errorf("the MX got %d messages from a listed address", n)
	}
}

// Per address family: whoami discovery finds an IPv4 address that passes and an IPv6 one that a DNSBL lists.
// Routing stays direct (one family is fit), but direct delivery leaves over IPv4 only: dest.test's preferred MX,
// reachable only over IPv6, is skipped for the IPv4 backup.
func TestEgressE2E_IPv6FailsDirectUsesIPv4(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	mx6 := relaytest.StartSink(t, relaytest.SinkOptions{Addr: "[::1]:0", Hostname: "mx6.dest.test"})
	listed := dnscheck.DNSBLName(netip.MustParseAddr("::1"), "bl.test")
	e := startEgressEnv(t, relaytest.SinkOptions{Addr: mxIP + ":" + strconv.Itoa(mx6.Port())},
		"dest.test. MX 5 mx6.dest.test.", "mx6.dest.test. AAAA ::1", strings.TrimSuffix(listed, ".")+". A 127.0.0.2")
	// The whoami servers answer like resolver1.opendns.com, with fixed addresses: one per family, since a
	// family's query goes over that family.
	who4 := startWhoami(t, "udp4", "127.0.0.1:0", goodEgress, "::1")
	who6 := startWhoami(t, "udp6", "[::1]:0", goodEgress, "::1")
	_, addr := e.start(t, e.configEgress(t, fmt.Sprintf("discovery = [\"dns\"]\nwhoami = [%q, %q]", who4, who6), "auto"))
	e.waitVerdict(t, goodEgress, "direct-ok")
	e.waitFamilyVerdict(t, "ipv6", "::1", "smarthost")
	send(t, addr, "b@dest.test", "family-1")
	waitSubject(t, e.mx, "the IPv4 MX", "family-1")
	if n := mx6.MessageCount(); n != 0 {
		t.Errorf("the IPv6-only MX got %d messages although IPv6 egress failed the check", n)
	}
	if n := e.sh.MessageCount(); n != 0 {
		t.Errorf("the smart host got %d messages although IPv4 is fit for direct delivery", n)
	}
}

// startWhoami serves A and AAAA myip.opendns.com with a4 and a6 on a UDP socket of network at addr.
func startWhoami(t *testing.T, network, addr, a4, a6 string) string {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && strings.EqualFold(q.Question[0].Name, dnscheck.WhoamiOpenDNS) {
			var (
				rr   dns.RR
				rerr error
			)
			switch q.Question[0].Qtype {
			case dns.TypeA:
				rr, rerr = dns.NewRR(dnscheck.WhoamiOpenDNS + " 0 IN A " + a4)
			case dns.TypeAAAA:
				rr, rerr = dns.NewRR(dnscheck.WhoamiOpenDNS + " 0 IN AAAA " + a6)
			}
			if rr != nil && rerr == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Gmail's reply to an address without PTR, from a real smtp-sink MX (one line: smtp-sink cannot send Gmail's
// multi-line form, the delivery tests do that), while the verdict says direct-ok (a receiver stricter than our
// check): the recipient goes through the smart host at once.
func TestEgressE2E_RerouteOn5725(t *testing.T) {
	e := startEgressEnv(t, relaytest.SinkOptions{Reject: map[string]string{
		"RCPT": "550 5.7.25 [127.0.0.1] The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP."}})
	_, addr := e.start(t, e.config(t, goodEgress, "auto"))
	e.waitVerdict(t, goodEgress, "direct-ok")
	send(t, addr, "b@dest.test", "reroute-1")
	waitSubject(t, e.sh, "the smart host", "reroute-1")
	if n := e.mx.MessageCount(); n != 0 {
		t.Errorf("the refusing MX completed %d transactions", n)
	}
	// The relay logs the delivery after the smart host's 250, which the smart host's dump precedes.
	testkit.Eventually(10*time.Second, func() bool { return strings.Contains(e.logs.String(), "status=sent") })
	log := e.logs.String()
	for _, want := range []string{"route=direct", "status=rerouted", "route=smarthost", "status=sent", "reason=ptr"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if m := e.metrics(t); !strings.Contains(m, `ptrelay_reroutes_total{reason="ptr"} 1`) {
		t.Errorf("metrics do not count the reroute:\n%s", grepLines(m, "reroute"))
	}
}

// metrics scrapes the daemon's Prometheus endpoint.
func (e *egressEnv) metrics(t *testing.T) string {
	t.Helper()
	for _, l := range e.status(t).Listeners {
		if a, ok := strings.CutPrefix(l, "metrics "); ok {
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + a + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatal("no metrics listener in status")
	return ""
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
