package delivery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// waitTranscripts waits until every one of n sessions has ended with QUIT, and returns their transcripts.
func waitTranscripts(t *testing.T, n int, get func() [][]string, log func() string) [][]string {
	t.Helper()
	var ts [][]string
	waitFor(t, "the peer's transcripts", 20*time.Second, func() bool {
		ts = get()
		done := 0
		for _, s := range ts {
			done += relaytest.CountVerb(s, "QUIT")
		}
		return len(ts) >= n && done >= n
	})
	if len(ts) != n {
		t.Fatalf("%d sessions, want %d: %q\n%s", len(ts), n, ts, log())
	}
	return ts
}

// verbs is a transcript's command words, "EHLO relay.ptrelay.test|MAIL|RCPT|..." style: the EHLO argument is
// kept, the others' arguments are not.
func verbs(transcript []string) string {
	out := make([]string, len(transcript))
	for i, c := range transcript {
		v, arg, _ := strings.Cut(c, " ")
		v = strings.ToUpper(v)
		switch v {
		case "EHLO", "HELO", "AUTH":
			v += " " + arg
		}
		out[i] = v
	}
	return strings.Join(out, "|")
}

// TestE2E_OneEHLOPerPlaintextSession: a session without TLS says EHLO once, with the configured hostname; two
// messages sent one after the other on a reused session still say it once.
func TestE2E_OneEHLOPerPlaintextSession(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	sink := sinkAt(t, "127.0.0.14", 0, relaytest.SinkOptions{Hostname: "mx.ehlo.test"})
	dnsAddr := dnstest.StartUnbound(t, "ehlo.test. MX 10 mx.ehlo.test.", "mx.ehlo.test. A 127.0.0.14")
	st := openStore(t, t.TempDir())
	cfg := testConfig(sink.Port())
	cfg.Delivery.PerDestination = 1
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("ehlo1"), "x@ehlo.test")
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("ehlo2"), "y@ehlo.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dnsAddr), Options{})
	waitFor(t, "both delivered", 15*time.Second, func() bool { return rec.count(Sent) == 2 })
	// The session ends with QUIT once it has waited a moment for more mail (linger).
	ts := waitTranscripts(t, 1, sink.Transcripts, sink.Log)
	want := "EHLO relay.ptrelay.test|MAIL|RCPT|DATA|.|MAIL|RCPT|DATA|.|QUIT"
	if got := verbs(ts[0]); got != want {
		t.Errorf("transcript %s\nwant       %s", got, want)
	}
}

// TestE2E_TwoEHLOsAroundSTARTTLS: with STARTTLS, EHLO once before it and once after (RFC 3207 4.2), both with
// the configured hostname, then AUTH on the encrypted session; nothing says "localhost".
func TestE2E_TwoEHLOsAroundSTARTTLS(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "saslpasswd2")
	sink := sinkAt(t, "127.0.0.15", 0, relaytest.SinkOptions{})
	pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{Addr: "127.0.0.16:0", RelayTo: sink.Addr(),
		Users: map[string]string{"relayuser": "goodpass"}, LogCommands: true})
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("goodpass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, t.TempDir())
	cfg := testConfig(1)
	cfg.Routing.Mode = config.RoutingSmarthost
	cfg.Smarthosts = []config.Smarthost{smarthostEntry(pf.Addr(), config.SmarthostSTARTTLS, func(h *config.Smarthost) {
		h.Username, h.PasswordFile = "relayuser", pass
	})}
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("starttls"), "x@far.test")
	_, rec, _ := run(t, cfg, st, nil, Options{RootCAs: pf.Pool()})
	waitFor(t, "delivered", 20*time.Second, func() bool { return rec.count(Sent) == 1 })
	ts := waitTranscripts(t, 1, pf.Transcripts, pf.Log)
	want := "EHLO relay.ptrelay.test|STARTTLS|EHLO relay.ptrelay.test|AUTH PLAIN|MAIL|RCPT|DATA|QUIT"
	if got := verbs(ts[0]); got != want {
		t.Errorf("transcript %s\nwant       %s", got, want)
	}
}

// TestE2E_OneEHLOAfterRSET: a transaction ended with RSET (every recipient refused) leaves the session as it
// was: the next transaction and the QUIT follow without another EHLO.
func TestE2E_OneEHLOAfterRSET(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "unbound")
	sink := sinkAt(t, "127.0.0.24", 0, relaytest.SinkOptions{Reject: map[string]string{"RCPT": "550 5.1.1 No such user"}})
	dnsAddr := dnstest.StartUnbound(t, "rset.test. MX 10 mx.rset.test.", "mx.rset.test. A 127.0.0.24")
	st := openStore(t, t.TempDir())
	cfg := testConfig(sink.Port())
	cfg.Delivery.PerDestination = 1
	// From the null sender, so the bounces make no DSN to deliver elsewhere.
	put(t, st, queue.Envelope{From: ""}, msgBody("rset1"), "x@rset.test")
	put(t, st, queue.Envelope{From: ""}, msgBody("rset2"), "y@rset.test")
	_, rec, _ := run(t, cfg, st, resolver(t, dnsAddr), Options{})
	waitFor(t, "both bounced", 15*time.Second, func() bool { return rec.count(Bounced) == 2 })
	ts := waitTranscripts(t, 1, sink.Transcripts, sink.Log)
	want := "EHLO relay.ptrelay.test|MAIL|RCPT|RSET|MAIL|RCPT|RSET|QUIT"
	if got := verbs(ts[0]); got != want {
		t.Errorf("transcript %s\nwant       %s", got, want)
	}
}
