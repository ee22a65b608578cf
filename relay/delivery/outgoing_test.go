package delivery

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"ptrelay/queue"
)

// headerPrepender adds one header field naming the candidate, reading the whole stored message first as a
// signer would.
type headerPrepender struct{ err error }

func (p headerPrepender) prepend(m *queue.Message, c *candidate, open func() (io.ReadCloser, error)) ([]byte, error) {
	if p.err != nil {
		return nil, p.err
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != m.Size {
		return nil, errors.New("could not read the stored message whole")
	}
	return []byte("X-Attempt: via " + c.host + "\r\n"), nil
}

// TestOutgoing_PrependedFields: header fields prepended on the way out go in front of the stored message, the
// message is otherwise sent byte for byte (dot lines included), and SIZE= counts what is sent.
func TestOutgoing_PrependedFields(t *testing.T) {
	f, port, dns := fakeMX(t, nil)
	st := openStore(t, t.TempDir())
	body := msgBody("prepend")
	put(t, st, queue.Envelope{From: "a@sender.test"}, body, "b@dest.test")
	_, rec, _ := runWith(t, testConfig(port), st, resolver(t, dns.Addr()), Options{},
		func(s *Scheduler) { s.prependers = []prepender{headerPrepender{}} })
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	msgs := f.messages()
	want := "X-Attempt: via mx1.dest.test\r\n" + body
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, []byte(want)) {
		t.Fatalf("peer got %q\nwant %q", msgs[0].Data, want)
	}
	if msgs[0].Size != int64(len(want)) {
		t.Errorf("SIZE=%d, want %d (what was sent, not the %d stored)", msgs[0].Size, len(want), len(body))
	}
}

// TestOutgoing_PrependFails: a step that cannot build the outgoing message defers the attempt as our own
// failure (4.3.0) without sending anything, and the session stays usable.
func TestOutgoing_PrependFails(t *testing.T) {
	f, port, dns := fakeMX(t, nil)
	st := openStore(t, t.TempDir())
	put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("nosign"), "b@dest.test")
	_, rec, _ := runWith(t, testConfig(port), st, resolver(t, dns.Addr()), Options{},
		func(s *Scheduler) { s.prependers = []prepender{headerPrepender{err: errors.New("no key")}} })
	waitFor(t, "a deferral", 10*time.Second, func() bool { return rec.count(Deferred) >= 1 })
	if r := rec.list()[0]; dsnField(r) != "4.3.0" || r.Status.Code != 0 {
		t.Errorf("attempt %+v, want our own 4.3.0", r)
	}
	if len(f.messages()) != 0 {
		t.Error("a message was sent")
	}
}
