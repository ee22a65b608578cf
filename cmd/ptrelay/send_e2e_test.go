package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/relay/relaytest"
)

// sendConfig writes a configuration for `ptrelay send`: its hostname is the EHLO name.
func sendConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "ptrelay.toml")
	cfg := "hostname = \"relay.send.test\"\ndata_dir = " + `"` + dir + `"` + "\n[dns]\nresolvers = [\"127.0.0.1:9\"]\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runSendOK runs `ptrelay send args...` in-process and fails the test unless it succeeds.
func runSendOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := runSend(args, &out, &errOut); err != nil {
		t.Fatalf("ptrelay send %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// sendTranscript waits for the one session the peer served and returns its commands' words.
func sendTranscript(t *testing.T, get func() [][]string, log func() string) string {
	t.Helper()
	var ts [][]string
	testkit.WaitForExplained(t, 20*time.Second, func() string { return "no complete session:\n" + log() }, func() bool {
		ts = get()
		return len(ts) >= 1 && relaytest.CountVerb(ts[len(ts)-1], "QUIT") == 1
	})
	if len(ts) != 1 {
		t.Fatalf("%d sessions, want one: %q", len(ts), ts)
	}
	out := make([]string, len(ts[0]))
	for i, c := range ts[0] {
		v, arg, _ := strings.Cut(c, " ")
		if v = strings.ToUpper(v); v == "EHLO" || v == "AUTH" {
			v += " " + arg
		}
		out[i] = v
	}
	return strings.Join(out, "|")
}

// TestSend_OneSessionOneEHLO: `ptrelay send` to a plaintext server opens one session and says EHLO once, with
// the configured hostname (not go-smtp's "localhost").
func TestSend_OneSessionOneEHLO(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	out := runSendOK(t, "-config", sendConfig(t), "-server", sink.Addr(), "-to", "admin@example.org")
	if !strings.Contains(out, "sent through "+sink.Addr()+": 250 ") {
		t.Errorf("output %q", out)
	}
	want := "EHLO relay.send.test|MAIL|RCPT|DATA|.|QUIT"
	if got := sendTranscript(t, sink.Transcripts, sink.Log); got != want {
		t.Errorf("transcript %s\nwant       %s", got, want)
	}
}

// TestSend_AuthLoginOverSTARTTLS: against a real Postfix with STARTTLS and AUTH, `ptrelay send -auth login`
// logs in with LOGIN (what Exchange uses) in the one session, after the second EHLO; without -auth it uses
// PLAIN.
func TestSend_AuthLoginOverSTARTTLS(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "saslpasswd2")
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ auth, mech string }{{"login", "LOGIN"}, {"", "PLAIN"}} {
		t.Run(c.mech, func(t *testing.T) {
			pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{RelayTo: sink.Addr(),
				Users: map[string]string{"exchange": "s3cret"}, LogCommands: true})
			args := []string{"-config", sendConfig(t), "-server", pf.Addr(), "-to", "admin@example.org",
				"-user", "exchange", "-password-file", pass}
			if c.auth != "" {
				args = append(args, "-auth", c.auth)
			}
			runSendOK(t, args...)
			want := "EHLO relay.send.test|STARTTLS|EHLO relay.send.test|AUTH " + c.mech + "|MAIL|RCPT|DATA|QUIT"
			if got := sendTranscript(t, pf.Transcripts, pf.Log); got != want {
				t.Errorf("transcript %s\nwant       %s", got, want)
			}
		})
	}
}

// TestSend_AuthNotOffered: -auth login against a server that offers only PLAIN says so and sends nothing.
func TestSend_AuthNotOffered(t *testing.T) {
	relaytest.Require(t, "smtp-sink", "postfix", "saslpasswd2")
	sink := relaytest.StartSink(t, relaytest.SinkOptions{})
	pf := relaytest.StartPostfix(t, relaytest.PostfixOptions{RelayTo: sink.Addr(),
		Users: map[string]string{"exchange": "s3cret"}, MainCF: []string{"smtpd_sasl_mechanism_filter = plain"}})
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := runSend([]string{"-config", sendConfig(t), "-server", pf.Addr(), "-to", "admin@example.org",
		"-user", "exchange", "-password-file", pass, "-auth", "login"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "does not offer AUTH LOGIN (offered: PLAIN)") {
		t.Errorf("ptrelay send -auth login to a PLAIN-only server: %v", err)
	}
}
