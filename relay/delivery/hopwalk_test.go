package delivery

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
	"ptrelay/relay/tlspolicy"
)

// smarthostConfig routes everything to a smart host at addr without TLS or login.
func smarthostConfig(addr string) *config.Config {
	cfg := testConfig(1)
	cfg.Routing.Mode = config.RoutingSmarthost
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(addr, config.SmarthostNoTLS, nil)}
	cfg.Queue.RetryMin = config.Duration(time.Minute)
	cfg.Queue.RetryMax = config.Duration(time.Minute)
	return cfg
}

// TestE2E_SmarthostNameFromConfiguredResolver: a smart host whose name exists only on the configured DNS server
// (a real unbound, not /etc/resolv.conf) is looked up there and delivered to; a name that does not exist defers
// the mail with 4.4.4 and never bounces it.
func TestE2E_SmarthostNameFromConfiguredResolver(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	sink := sinkAt(t, "127.0.0.17", 0, relaytest.SinkOptions{})
	dnsAddr := dnstest.StartUnbound(t, "mail.isp.test. A 127.0.0.17")

	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("byname"), "x@far.test")
	_, rec, stop := run(t, smarthostConfig("mail.isp.test:"+strconv.Itoa(sink.Port())), st, resolver(t, dnsAddr), Options{})
	waitFor(t, "delivery", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
	stop()
	if r := rec.list()[0]; r.Relay != "isp/mail.isp.test[127.0.0.17]:"+strconv.Itoa(sink.Port()) || r.Route != "smarthost" {
		t.Errorf("delivered %+v, want relay=isp/mail.isp.test[127.0.0.17]", r)
	}
	if m := sink.WaitMessages(t, 1, 5*time.Second); m[0].To[0] != "x@far.test" {
		t.Errorf("sink got %+v", m[0])
	}

	st2 := openStore(t, t.TempDir())
	put(t, st2, queue.Envelope{From: "a@sender.test"}, msgBody("noname"), "x@far.test")
	_, rec2, _ := run(t, smarthostConfig("missing.isp.test:25"), st2, resolver(t, dnsAddr), Options{})
	waitFor(t, "a deferral", 15*time.Second, func() bool { return len(rec2.list()) >= 1 })
	if r := rec2.list()[0]; r.Outcome != Deferred || dsnField(r) != "4.4.4" || !strings.Contains(r.Status.Text, "missing.isp.test") {
		t.Errorf("a smart host name that does not resolve: %+v (%s), want deferred 4.4.4", r, r.Reply())
	}
}

// TestHopWalk_SmarthostAddresses: the smart host is a hop with several candidates like a domain's MX hosts:
// its first address refuses connections, its second takes the mail.
func TestHopWalk_SmarthostAddresses(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	port := relaytest.FreePort(t, "127.0.0.18")
	sink := sinkAt(t, "127.0.0.19", port, relaytest.SinkOptions{})
	dns := dnstest.New(t, "sh.isp.test. A 127.0.0.18", "sh.isp.test. A 127.0.0.19")
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("second"), "x@far.test")
	_, rec, _ := run(t, smarthostConfig("sh.isp.test:"+strconv.Itoa(port)), st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "delivery", 15*time.Second, func() bool { return rec.count(Sent) == 1 })
	if r := rec.list()[0]; !strings.HasPrefix(r.Relay, "isp/sh.isp.test[127.0.0.19]:") {
		t.Errorf("delivered through %s, want the second address", r.Relay)
	}
	sink.WaitMessages(t, 1, 5*time.Second)
}

// TestHopWalk_LoginRefusedSkipsTheHostsOtherAddresses: a refused login is the host's answer for every address
// it has: the walk does not log in again at its next address.
func TestHopWalk_LoginRefusedSkipsTheHostsOtherAddresses(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.20")
	first := startFake(t, "127.0.0.20:"+strconv.Itoa(port), func(f *fakePeer) { f.authUsers = map[string]string{"user": "right"} })
	second := startFake(t, "127.0.0.21:"+strconv.Itoa(port), func(f *fakePeer) { f.authUsers = map[string]string{"user": "right"} })
	dns := dnstest.New(t, "sh.isp.test. A 127.0.0.20", "sh.isp.test. A 127.0.0.21")
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := smarthostConfig("sh.isp.test:" + strconv.Itoa(port))
	cfg.Smarthosts[0].Username, cfg.Smarthosts[0].PasswordFile = "user", pass
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("login"), "x@far.test")
	_, rec, stop := run(t, cfg, st, resolver(t, dns.Addr()), Options{})
	waitFor(t, "a deferral", 15*time.Second, func() bool { return rec.count(Deferred) == 1 })
	stop()
	if r := rec.list()[0]; r.Status.Code != 535 || rec.count(Bounced) != 0 {
		t.Errorf("attempt %+v (%s), want the 535 deferred", r, r.Reply())
	}
	if first.sessionCount() != 1 || second.sessionCount() != 0 {
		t.Errorf("sessions: first address %d, second %d; want 1 and 0", first.sessionCount(), second.sessionCount())
	}
}

// skipPolicy is an MX policy that forbids some hosts (as an MTA-STS policy that does not list them) and
// requires TLS of the others.
type skipPolicy struct {
	skip map[string]bool
	mode smtpclient.TLSMode
}

var policyRefusal = smtpstatus.Enhanced{4, 7, 0}

func (p skipPolicy) forDomain(context.Context, string) (hostPolicy, *decision) { return p, nil }

func (p skipPolicy) forHost(_ context.Context, h tlspolicy.Host) (smtpclient.TLSPolicy, *decision) {
	if p.skip[h.Name] {
		return smtpclient.TLSPolicy{}, &decision{Outcome: Deferred, Status: ours(policyRefusal, "MX host "+h.Name+" not allowed by policy")}
	}
	return smtpclient.TLSPolicy{Mode: p.mode}, nil
}

func (skipPolicy) opened(string, smtpclient.TLSPolicy, *smtpclient.Session) {}

func (skipPolicy) failed(_ string, p smtpclient.TLSPolicy, cause error) decision {
	return classify(stTLS, cause, where{opportunisticTLS: p.Mode == smtpclient.TLSOpportunistic})
}

// TestHopWalk_MXPolicy: the walk asks the MX policy about every host: a host it forbids is not dialed, a host it
// requires TLS of is dialed with that requirement (and never in plaintext), and when it forbids every host the
// mail is deferred with its reason.
func TestHopWalk_MXPolicy(t *testing.T) {
	port := relaytest.FreePort(t, "127.0.0.22")
	forbidden := startFake(t, "127.0.0.22:"+strconv.Itoa(port), nil)
	allowed := startFake(t, "127.0.0.23:"+strconv.Itoa(port), nil) // offers no STARTTLS
	dns := dnstest.New(t, mxZone("dest.test", "127.0.0.22", "127.0.0.23")...)
	cases := []struct {
		name    string
		policy  skipPolicy
		outcome Outcome
		status  string
		allowed int // sessions at the allowed host
	}{
		{"forbidden host skipped", skipPolicy{skip: map[string]bool{"mx1.dest.test": true}, mode: smtpclient.TLSOpportunistic}, Sent, "", 1},
		{"TLS required, not offered", skipPolicy{skip: map[string]bool{"mx1.dest.test": true}, mode: smtpclient.TLSRequired}, Deferred, "4.7.5", 1},
		{"every host forbidden", skipPolicy{skip: map[string]bool{"mx1.dest.test": true, "mx2.dest.test": true}}, Deferred, "4.7.0", 0},
	}
	before := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("policy"), "x@dest.test")
			cfg := testConfig(port)
			cfg.Queue.RetryMin = config.Duration(time.Minute)
			cfg.Queue.RetryMax = config.Duration(time.Minute)
			_, rec, stop := runWith(t, cfg, st, resolver(t, dns.Addr()), Options{}, func(s *Scheduler) { s.mxPolicy = c.policy })
			waitFor(t, "an attempt", 15*time.Second, func() bool { return len(rec.list()) >= 1 })
			stop()
			r := rec.list()[0]
			if r.Outcome != c.outcome || (c.status != "" && dsnField(r) != c.status) {
				t.Errorf("attempt %+v (%s), want %s %s", r, r.Reply(), c.outcome, c.status)
			}
			if forbidden.sessionCount() != 0 {
				t.Errorf("the forbidden host was dialed")
			}
			if n := allowed.sessionCount() - before; n != c.allowed {
				t.Errorf("%d sessions at the allowed host, want %d", n, c.allowed)
			}
			before = allowed.sessionCount()
		})
	}
}

// TestReload_SessionNotReused: a session kept open for its hop is not reused after a reload: the next message
// goes out with the new settings (here another smart host).
func TestReload_SessionNotReused(t *testing.T) {
	a := startFake(t, "127.0.0.1:0", nil)
	b := startFake(t, "127.0.0.1:0", nil)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("first"), "x@far.test")
	s, rec, _ := run(t, smarthostConfig(a.addr), st, nil, Options{})
	waitFor(t, "the first delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	// The session to a lingers for more mail; the reload and the next message come while it does.
	s.Reload(NewSettings(smarthostConfig(b.addr)))
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("second"), "y@far.test")
	waitFor(t, "the second delivery", 10*time.Second, func() bool { return rec.count(Sent) == 2 })
	if len(a.messages()) != 1 || len(b.messages()) != 1 {
		t.Errorf("old smart host got %d messages, new one %d; want 1 and 1", len(a.messages()), len(b.messages()))
	}
}
