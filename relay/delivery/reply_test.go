package delivery

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/smtpstatus"
)

// scriptedPeer is a bare SMTP server on loopback that answers every command with 250 (354 to DATA), except
// that the stage named by failAt gets reply, verbatim.
type scriptedPeer struct {
	addr   string
	failAt string // "greeting", "EHLO", "MAIL", "RCPT", "DATA" (the command) or "." (after the body)
	reply  string // raw reply lines, CRLF-terminated
	ehlo   string // the EHLO reply
}

func startScripted(t *testing.T, failAt, reply string) *scriptedPeer {
	t.Helper()
	p := &scriptedPeer{failAt: failAt, reply: reply, ehlo: "250 scripted.test\r\n"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for {
			c, err := l.Accept()
			if err != nil {
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c) }()
		}
	}()
	return p
}

func (p *scriptedPeer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	say := func(s string) bool { _, err := c.Write([]byte(s)); return err == nil }
	if p.failAt == "greeting" {
		say(p.reply)
		return
	}
	if !say("220 scripted.test ESMTP\r\n") {
		return
	}
	r := bufio.NewReader(c)
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if inData {
			if line != "." {
				continue
			}
			inData = false
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		if line == "." {
			verb = "."
		}
		switch {
		case verb == p.failAt:
			say(p.reply)
		case verb == "EHLO":
			say(p.ehlo)
		case verb == "DATA":
			inData = true
			say("354 go on\r\n")
		case verb == "QUIT":
			say("221 bye\r\n")
			return
		default:
			say("250 2.0.0 ok\r\n")
		}
	}
}

// TestReply_SameAtEveryStage: a multi-line reply with its enhanced code repeated on every line (RFC 2034) is
// recorded the same whether it came as the greeting, to MAIL, to RCPT or after the body: one parser reads them
// all (smtpstatus.ParseReply), whichever reader received them.
func TestReply_SameAtEveryStage(t *testing.T) {
	reply := "451-4.7.1 Greylisted, see\r\n451-4.7.1 https://postmaster.example/greylist\r\n451 4.7.1 and try later\r\n"
	want := smtpstatus.Status{Code: 451, Enhanced: smtpstatus.Enhanced{4, 7, 1},
		Text: "Greylisted, see https://postmaster.example/greylist and try later"}
	for _, stage := range []string{"greeting", "MAIL", "RCPT", "."} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			p := startScripted(t, stage, reply)
			_, port, _ := net.SplitHostPort(p.addr)
			pn, _ := strconv.Atoi(port)
			dns := dnstest.New(t, mxZone("dest.test", "127.0.0.1")...)
			st := openStore(t, t.TempDir())
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("stages"), "b@dest.test")
			_, rec, stop := run(t, testConfig(pn), st, resolver(t, dns.Addr()), Options{})
			waitFor(t, "a deferral", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
			stop()
			got := rec.list()[0]
			if got.Status != want {
				t.Errorf("reply at %s recorded as %#v\nwant %#v", stage, got.Status, want)
			}
		})
	}
}
