package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

var queuedAsRE = regexp.MustCompile(`queued as ([0-9A-Z]+)`)

// crashMessage is the body client c sends as its n-th message: a unique subject and a size that puts some
// bodies inline in bbolt and others in spool files.
func crashMessage(c, n int) []byte {
	size := []int{200, 3000, 70 << 10, 300 << 10}[(c+n)%4]
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <c%d@example.com>\r\nTo: <x@example.org>\r\nSubject: crash-%d-%d\r\n\r\n", c, c, n)
	line := strings.Repeat(fmt.Sprintf("%d-%d ", c, n), 40)[:70] + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("END\r\n")
	return b.Bytes()
}

// sendOneRaw delivers one message and returns the queue ID from the 250 reply ("" when the relay did not
// acknowledge it, e.g. because it was killed mid-transaction).
func sendOneRaw(addr string, msg []byte) string {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if c.Hello("crash.test") != nil || c.Mail("sender@example.com", nil) != nil || c.Rcpt("x@example.org", nil) != nil {
		return ""
	}
	w, err := c.Data()
	if err != nil {
		return ""
	}
	if _, err := w.Write(msg); err != nil {
		return ""
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return ""
	}
	if m := queuedAsRE.FindStringSubmatch(resp.StatusText); m != nil {
		return m[1]
	}
	return ""
}

// TestCrash_AcknowledgedMailSurvivesSIGKILL runs the built binary, has several clients inject concurrently, kills
// the process with SIGKILL at random moments and restarts it; every message that got a 250 must be in the queue
// afterwards with its whole body, and no message in the queue may be partial.
func TestCrash_AcknowledgedMailSurvivesSIGKILL(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", relaytest.FreePort(t, "127.0.0.1"))
	// Mail must stay queued: the smart host refuses connections and retries are far away.
	d := startDaemon(t, relaytest.DaemonOptions{Config: fmt.Sprintf(`
hostname = "relay.crash.test"
[smtp]
listen = [%q]
[[smarthosts]]
name = "isp"
address = "127.0.0.1:9"
tls = "none"
[routing]
mode = "smarthost"
[queue]
retry_min = "1h"
retry_max = "2h"
`, addr)})

	const clients, rounds = 6, 5
	acked := map[string][]byte{} // queue ID -> body sent
	var mu sync.Mutex
	// The kill moments come from a logged seed (testkit.Seed); a replay repeats them, while the clients'
	// progress between them is the machine's.
	rng := rand.New(rand.NewPCG(testkit.Seed(t), 7))
	for round := range rounds {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for n := 0; n < 400; n++ {
					select {
					case <-stop:
						return
					default:
					}
					msg := crashMessage(c, round*1000+n)
					if id := sendOneRaw(addr, msg); id != "" {
						mu.Lock()
						acked[id] = msg
						mu.Unlock()
					}
				}
			}(c)
		}
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		d.Kill()
		close(stop)
		wg.Wait()
		d.Restart()
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM after the crashes: exit %d\n%s", code, tailLog(d))
	}
	if len(acked) < rounds {
		t.Fatalf("only %d messages were acknowledged over %d rounds: the test proves nothing\n%s", len(acked), rounds, d.Stderr())
	}

	store, err := queue.Open(queue.Options{Dir: filepath.Join(d.Dir(), "ptrelay-data"), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	msgs, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	inQueue := map[string]bool{}
	for _, m := range msgs {
		inQueue[m.ID] = true
		rc, err := store.Body(m.ID)
		if err != nil {
			t.Errorf("message %s: body unreadable: %v", m.ID, err)
			continue
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || int64(len(body)) != m.Size || !bytes.HasSuffix(body, []byte("\r\nEND\r\n")) {
			t.Errorf("message %s is partial: %d bytes read, %d recorded, err %v", m.ID, len(body), m.Size, err)
		}
		if sent, ok := acked[m.ID]; ok {
			// The relay prepends Received and adds Message-ID and Date to the header; the rest is the client's.
			head, text, _ := bytes.Cut(sent, []byte("\r\n\r\n"))
			subject := head[bytes.Index(head, []byte("Subject:")):]
			if !bytes.HasSuffix(body, append([]byte("\r\n\r\n"), text...)) || !bytes.Contains(body, subject) {
				t.Errorf("message %s: stored message is not the one the client sent", m.ID)
			}
		}
	}
	lost := 0
	for id := range acked {
		if !inQueue[id] {
			lost++
			t.Errorf("message %s was acknowledged with 250 but is not in the queue after the crashes", id)
		}
	}
	corrupt, err := store.Corrupt()
	if err != nil {
		t.Fatal(err)
	}
	if len(corrupt) > 0 {
		t.Errorf("quarantined records after the crashes: %+v", corrupt)
	}
	t.Logf("%d messages acknowledged over %d SIGKILLs, %d in the queue, %d lost", len(acked), rounds, len(msgs), lost)
}
