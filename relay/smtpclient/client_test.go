package smtpclient

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/relay/smtpstatus"
)

// rawPeer answers each command line from replies (by verb, "" for the greeting) and records the commands. It
// stands in for servers that misbehave in ways real peers on this machine cannot be made to.
type rawPeer struct {
	addr    string
	mu      sync.Mutex
	cmds    []string
	replies map[string]string
}

func startRaw(t *testing.T, replies map[string]string) *rawPeer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{addr: l.Addr().String(), replies: replies}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(replies[""])); err != nil {
			return
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			p.mu.Lock()
			p.cmds = append(p.cmds, line)
			p.mu.Unlock()
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			reply, ok := replies[verb]
			if !ok {
				reply = "250 ok\r\n"
			}
			if _, err := c.Write([]byte(reply)); err != nil || verb == "QUIT" {
				return
			}
		}
	}()
	return p
}

func (p *rawPeer) commands() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.cmds, "|")
}

func dial(t *testing.T, p *rawPeer, mode TLSMode) (*Session, error) {
	t.Helper()
	return Dial(context.Background(), Spec{Host: "peer.test", Addr: p.addr, Helo: "relay.test", Timeout: 5 * time.Second,
		TLS: TLSPolicy{Mode: mode}})
}

// TestDial_Stages: a failure is reported at the step where it happened, with the server's reply.
func TestDial_Stages(t *testing.T) {
	for _, c := range []struct {
		name    string
		replies map[string]string
		mode    TLSMode
		stage   Stage
		code    int
	}{
		{"5xx greeting", map[string]string{"": "554 5.7.1 go away\r\n"}, TLSOff, StageGreeting, 554},
		{"EHLO and HELO refused", map[string]string{"": "220 hi\r\n", "EHLO": "500 what\r\n", "HELO": "550 5.7.1 no\r\n"}, TLSOff, StageEHLO, 550},
		{"STARTTLS required, not offered", map[string]string{"": "220 hi\r\n", "EHLO": "250 hi\r\n"}, TLSRequired, StageTLS, 0},
		{"STARTTLS required, refused", map[string]string{"": "220 hi\r\n", "EHLO": "250-hi\r\n250 STARTTLS\r\n", "STARTTLS": "454 4.7.0 not now\r\n"}, TLSRequired, StageTLS, 454},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := dial(t, startRaw(t, c.replies), c.mode)
			var se *StepError
			if !errors.As(err, &se) || se.Stage != c.stage {
				t.Fatalf("error %v, want one at %s", err, c.stage)
			}
			st, ok := smtpstatus.FromError(err)
			if c.code != 0 && (!ok || st.Code != c.code) {
				t.Errorf("reply %+v (%v), want %d", st, ok, c.code)
			}
			if c.code == 0 && !errors.Is(err, ErrNoSTARTTLS) {
				t.Errorf("error %v, want ErrNoSTARTTLS", err)
			}
		})
	}
}

// TestDial_OpportunisticRefusedSTARTTLS: a refused STARTTLS leaves the session in plaintext (RFC 3207 4), after
// one EHLO only, and ready for mail.
func TestDial_OpportunisticRefusedSTARTTLS(t *testing.T) {
	p := startRaw(t, map[string]string{"": "220 hi\r\n", "EHLO": "250-hi\r\n250 STARTTLS\r\n", "STARTTLS": "454 4.7.0 not now\r\n"})
	ss, err := dial(t, p, TLSOpportunistic)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Secure() {
		t.Error("a refused STARTTLS left a secure session")
	}
	if err := ss.Mail("a@b.test", nil); err != nil {
		t.Fatal(err)
	}
	ss.Close(true)
	if got, want := p.commands(), "EHLO relay.test|STARTTLS|MAIL FROM:<a@b.test>|QUIT"; got != want {
		t.Errorf("commands %s, want %s", got, want)
	}
}

// TestAuth_Refusals: no credentials cross a plaintext session unless allowed, and a mechanism the server does
// not offer is named with what it offers; nothing is sent in either case.
func TestAuth_Refusals(t *testing.T) {
	p := startRaw(t, map[string]string{"": "220 hi\r\n", "EHLO": "250-hi\r\n250 AUTH PLAIN\r\n"})
	ss, err := dial(t, p, TLSOff)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close(true)
	if err := ss.Auth(Credentials{Username: "u", Password: "p"}); !errors.Is(err, ErrPlaintextAuth) {
		t.Errorf("plaintext auth: %v", err)
	}
	var no *AuthNotOfferedError
	err = ss.Auth(Credentials{Mech: AuthLogin, Username: "u", Password: "p", AllowPlaintext: true})
	if !errors.As(err, &no) || no.Offered != "PLAIN" {
		t.Errorf("LOGIN when only PLAIN is offered: %v", err)
	}
	if got := p.commands(); got != "EHLO relay.test" {
		t.Errorf("commands %s: credentials were sent", got)
	}
}
