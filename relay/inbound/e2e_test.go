package inbound

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"ptrelay/relay/relaytest"
)

// End-to-end with real clients (swaks, msmtp) against the in-process server, so -race sees the server code.

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestE2E_SwaksAllowed(t *testing.T) {
	relaytest.Require(t, "swaks")
	ts := startServer(t, nil, serverOpt{})
	out, err := relaytest.Swaks(t, "--server", ts.addr, "--ehlo", "SBS2003.contoso.local",
		"--from", "admin@contoso.com", "--to", "user@example.org,other@example.net",
		"--header", "Subject: swaks e2e", "--body", "hello from swaks")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	id := queuedID(t, out[strings.Index(out, "queued as")-20:])
	ms := ts.messages()
	if len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("queue: %d messages, want ID %s", len(ms), id)
	}
	m := ms[0]
	if m.Envelope.From != "admin@contoso.com" || m.Envelope.ClientHelo != "SBS2003.contoso.local" ||
		len(m.Recipients) != 2 || m.Recipients[0].Addr != "user@example.org" || m.Recipients[1].Addr != "other@example.net" {
		t.Fatalf("envelope %+v recipients %+v", m.Envelope, m.Recipients)
	}
	if !strings.Contains(string(m.body), "Subject: swaks e2e\r\n") || !strings.Contains(string(m.body), "hello from swaks") {
		t.Errorf("body: %s", clip(m.body))
	}
}

func TestE2E_SwaksRelayDenied(t *testing.T) {
	relaytest.Require(t, "swaks")
	ts := startServer(t, nil, serverOpt{})
	for _, tr := range addressTricks {
		rcpt := strings.TrimSuffix(strings.TrimPrefix(tr.rcpt, "<"), ">")
		out, err := relaytest.Swaks(t, "--server", ts.addr, "--local-interface", "127.0.0.5",
			"--from", "a@contoso.com", "--to", rcpt, "--quit-after", "RCPT")
		if err == nil || !strings.Contains(out, "<** 554 5.7.1 <"+tr.stored+">: Relay access denied") {
			t.Errorf("RCPT TO:<%s> from 127.0.0.5: err=%v\n%s", rcpt, err, out)
		}
	}
	if ms := ts.messages(); len(ms) != 0 {
		t.Fatalf("queue holds %d messages", len(ms))
	}
}

// AUTH LOGIN and PLAIN over STARTTLS from a client the server sees on the LAN (see tlsServer), wrong password,
// and AUTH refused before STARTTLS.
func TestE2E_SwaksAuth(t *testing.T) {
	relaytest.Require(t, "swaks")
	ts, _ := tlsServer(t, nil)
	base := []string{"--server", ts.addr, "--ehlo", "EX2010.contoso.local", "--from", "a@contoso.com", "--to", "b@example.org"}
	for _, mech := range []string{"LOGIN", "PLAIN"} {
		out, err := relaytest.Swaks(t, append(base, "--tls", "--auth", mech, "--auth-user", testUser, "--auth-password", testPass)...)
		if err != nil || !strings.Contains(out, "<~  235 ") || !strings.Contains(out, "queued as") {
			t.Errorf("AUTH %s over STARTTLS: %v\n%s", mech, err, out)
		}
	}
	out, err := relaytest.Swaks(t, append(base, "--tls", "--auth", "LOGIN", "--auth-user", testUser, "--auth-password", "wrong")...)
	if err == nil || !strings.Contains(out, "535 5.7.8") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}
	out, err = relaytest.Swaks(t, append(base, "--auth", "LOGIN", "--auth-user", testUser, "--auth-password", testPass)...)
	if err == nil || strings.Contains(out, "235 ") || !strings.Contains(out, "did not advertise authentication") {
		t.Errorf("AUTH before STARTTLS off loopback: %v\n%s", err, out)
	}
	ms := ts.messages()
	if len(ms) != 2 {
		t.Fatalf("queue holds %d messages, want 2", len(ms))
	}
	for _, m := range ms {
		if m.Envelope.AuthUser != testUser {
			t.Errorf("message %s: auth user %q", m.ID, m.Envelope.AuthUser)
		}
	}
}

func TestE2E_Msmtp(t *testing.T) {
	relaytest.Require(t, "msmtp")
	ts, _ := tlsServer(t, nil)
	msg := []byte("From: app@contoso.com\r\nTo: b@example.org\r\nSubject: msmtp e2e\r\n\r\nline one\r\n.leading dot\r\n")
	plain := startServer(t, nil, serverOpt{})
	out, err := relaytest.Msmtp(t, relaytest.MsmtpConfig{Host: "127.0.0.1", Port: portOf(t, plain.addr), From: "app@contoso.com",
		Domain: "nas.contoso.local"}, []string{"b@example.org", "c@example.net"}, msg)
	if err != nil {
		t.Fatalf("msmtp from an allowed address: %v\n%s", err, out)
	}
	ms := plain.messages()
	if len(ms) != 1 || ms[0].Envelope.From != "app@contoso.com" || len(ms[0].Recipients) != 2 || ms[0].Envelope.ClientHelo != "nas.contoso.local" {
		t.Fatalf("queue: %+v", ms)
	}
	if !strings.Contains(string(ms[0].body), "\r\n\r\nline one\r\n.leading dot\r\n") {
		t.Errorf("body not intact: %q", ms[0].body)
	}
	for _, auth := range []string{"login", "plain"} {
		out, err = relaytest.Msmtp(t, relaytest.MsmtpConfig{Host: "127.0.0.1", Port: portOf(t, ts.addr), From: "app@contoso.com",
			TLS: true, STARTTLS: true, Auth: auth, User: testUser, Password: testPass}, []string{"b@example.org"}, msg)
		if err != nil {
			t.Errorf("msmtp AUTH %s over STARTTLS: %v\n%s", auth, err, out)
		}
	}
	if ms := ts.messages(); len(ms) != 2 {
		t.Fatalf("queue holds %d messages after msmtp AUTH", len(ms))
	}
}
