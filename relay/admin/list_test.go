package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/queue"
)

// stepQueue hands out its messages one at a time: after each it waits for the test to let it go on, so a test
// can see where the first message is while the scan has not produced the rest.
type stepQueue struct {
	fakeQueue
	msgs []*queue.Message
	next chan struct{} // one receive per message after the first
	err  error         // returned after the messages, if set
}

func (q *stepQueue) Scan(f queue.Filter, fn func(queue.Item) error) (queue.Page, error) {
	var page queue.Page
	for i, m := range q.msgs {
		if i > 0 {
			if err := fn(queue.Item{}); err != nil { // the end of a batch of one, as queue.Store.Scan marks it
				return page, err
			}
			select {
			case <-q.next:
			case <-time.After(5 * time.Second):
				return page, errors.New("the test never let the scan go on")
			}
		}
		page.Count++
		page.Last = m.ID
		if err := fn(queue.Item{Message: m}); err != nil {
			return page, err
		}
	}
	return page, q.err
}

func testMessage(id string) *queue.Message {
	return &queue.Message{ID: id, Arrival: time.Unix(1700000000, 0).UTC(), Size: 10,
		Envelope:   queue.Envelope{From: "s@example.test"},
		Recipients: []queue.Recipient{{Addr: "r@example.org", State: queue.StateQueued}}}
}

// The daemon writes each message as the scan produces it and the client hands each to its caller as it reads
// it: the first message reaches the CLI while the daemon's scan has not produced the second.
func TestList_StreamsTheFirstMessageAtOnce(t *testing.T) {
	q := &stepQueue{next: make(chan struct{})}
	for _, id := range []string{"0000000000001", "0000000000002", "0000000000003"} {
		q.msgs = append(q.msgs, testMessage(id))
	}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	serve(t, NewServer(q, nil, nil, nil), sock, "")
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	page, err := c.Scan(queue.Filter{}, func(it queue.Item) error {
		if it.Message == nil {
			return nil // the end of a batch
		}
		got = append(got, it.Message.ID)
		if len(got) == len(q.msgs) {
			return nil
		}
		// The daemon's scan is parked before its next message until this send: having this message now means
		// it crossed the socket before the next one existed.
		select {
		case q.next <- struct{}{}:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("the daemon's scan is not waiting: did it run ahead?")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "0000000000001 0000000000002 0000000000003" ||
		page != (queue.Page{Count: 3, Last: "0000000000003"}) {
		t.Fatalf("got %v, page %+v", got, page)
	}
}

// A listing that fails after it began ends with the daemon's error, which keeps its kind; one cut short (the
// daemon stopped) is an error, not a short listing.
func TestList_FailureAfterTheStart(t *testing.T) {
	q := &stepQueue{next: make(chan struct{}, 10), err: fmt.Errorf("scan: %w: disk gone", queue.ErrStorage)}
	q.msgs = []*queue.Message{testMessage("0000000000001"), testMessage("0000000000002")}
	q.next <- struct{}{}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	serve(t, NewServer(q, nil, nil, nil), sock, "")
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	_, err = c.Scan(queue.Filter{}, func(it queue.Item) error {
		if it.Message != nil {
			n++
		}
		return nil
	})
	if n != 2 || !errors.Is(err, queue.ErrStorage) || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("%d messages, err %v", n, err)
	}

	// A server that sends one line and hangs up.
	cut := filepath.Join(t.TempDir(), "cut.sock")
	ln, err := net.Listen("unix", cut)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(listLine{Message: testMessage("0000000000001")})
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c2, err := Dial(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	n = 0
	_, err = c2.Scan(queue.Filter{}, func(queue.Item) error { n++; return nil })
	if n != 1 || err == nil || !strings.Contains(err.Error(), "stopped before its end") {
		t.Fatalf("cut listing: %d messages, err %v", n, err)
	}
}

func TestFilterArgs(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	good := []struct {
		args FilterArgs
		want queue.Filter
	}{
		{FilterArgs{}, queue.Filter{}},
		{FilterArgs{State: "Deferred"}, queue.Filter{State: queue.StateDeferred}},
		{FilterArgs{Domain: "@Example.com"}, queue.Filter{Domain: "Example.com"}},
		{FilterArgs{Sender: "<user@example.com>"}, queue.Filter{Sender: "user@example.com"}},
		{FilterArgs{Sender: "<>"}, queue.Filter{Sender: "<>"}},
		{FilterArgs{Sender: "@example.com"}, queue.Filter{Sender: "@example.com"}},
		{FilterArgs{Older: 2 * time.Hour}, queue.Filter{Before: now.Add(-2 * time.Hour)}},
		{FilterArgs{Limit: 10, After: "6C6H88T94GR00"}, queue.Filter{Limit: 10, After: "6C6H88T94GR00"}},
	}
	for _, g := range good {
		f, err := g.args.Filter(now)
		if err != nil || f != g.want {
			t.Errorf("%+v: %+v, %v; want %+v", g.args, f, err, g.want)
		}
	}
	bad := []struct {
		args FilterArgs
		says string
	}{
		{FilterArgs{State: "stuck"}, "queued, active, deferred"},
		{FilterArgs{Domain: "a b"}, "example.com"},
		{FilterArgs{Domain: "user@example.com"}, "example.com"},
		{FilterArgs{Sender: "user"}, "address"},
		{FilterArgs{Sender: "@"}, "address"},
		{FilterArgs{Older: -time.Hour}, "negative"},
		{FilterArgs{Limit: -1}, "negative"},
		{FilterArgs{After: "../etc"}, "queue ID"},
	}
	for _, b := range bad {
		if _, err := b.args.Filter(now); err == nil || !strings.Contains(err.Error(), b.says) {
			t.Errorf("%+v: %v, want an error saying %q", b.args, err, b.says)
		}
	}
}

// What the client sends is what the server decodes; the server refuses what it does not know.
func TestFilter_Wire(t *testing.T) {
	for _, f := range append(listFilters, queue.Filter{State: queue.StateHold, Domain: "example.org",
		Sender: "@example.com", Before: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), After: "6C6H88T94GR00", Limit: 7}) {
		got, err := decodeFilter(encodeFilter(f))
		if err != nil || !got.Before.Equal(f.Before) {
			t.Errorf("%+v: %+v, %v", f, got, err)
		}
		got.Before = f.Before
		if got != f {
			t.Errorf("round trip of %+v gave %+v", f, got)
		}
	}
	for _, q := range []string{"statee=hold", "limit=x", "before=yesterday", "state=stuck"} {
		v, _ := parseQuery(q)
		if _, err := decodeFilter(v); err == nil {
			t.Errorf("%q accepted", q)
		}
	}
}

func parseQuery(q string) (map[string][]string, error) {
	v := map[string][]string{}
	for _, kv := range strings.Split(q, "&") {
		k, val, _ := strings.Cut(kv, "=")
		v[k] = append(v[k], val)
	}
	return v, nil
}

// The JSON listing is written message by message, one per line, and reads as the document the whole would
// make: {"messages": [...], "corrupt": [...]}.
func TestJSONListWriter_SameDocument(t *testing.T) {
	msgs := []*queue.Message{testMessage("0000000000001"), testMessage("0000000000002")}
	msgs[1].Envelope.From = "<odd>&\"quoted\"@example.test"
	corrupt := []queue.CorruptRecord{{Key: "0000000000003", Reason: "does not decode", At: time.Unix(1, 0).UTC()}}
	for _, tc := range []struct {
		msgs    []*queue.Message
		corrupt []queue.CorruptRecord
	}{{nil, nil}, {msgs, nil}, {msgs, corrupt}, {nil, corrupt}} {
		var got bytes.Buffer
		w := NewJSONListWriter(&got)
		for _, m := range tc.msgs {
			w.Item(queue.Item{Message: m})
		}
		if err := w.Finish(queue.Page{}, tc.corrupt); err != nil {
			t.Fatal(err)
		}
		doc := struct {
			Messages []*queue.Message      `json:"messages"`
			Corrupt  []queue.CorruptRecord `json:"corrupt,omitempty"`
		}{tc.msgs, tc.corrupt}
		if doc.Messages == nil {
			doc.Messages = []*queue.Message{}
		}
		var back struct {
			Messages []*queue.Message      `json:"messages"`
			Corrupt  []queue.CorruptRecord `json:"corrupt,omitempty"`
		}
		if err := json.Unmarshal(got.Bytes(), &back); err != nil {
			t.Fatalf("%v:\n%s", err, got.String())
		}
		want, _ := json.Marshal(doc)
		again, _ := json.Marshal(back)
		if string(again) != string(want) {
			t.Errorf("streamed:\n%s\nwhole:\n%s", got.String(), want)
		}
		// One line per message: each line that holds a message is a whole JSON value.
		n := 0
		for _, line := range strings.Split(got.String(), "\n") {
			if strings.Contains(line, `"id":`) {
				n++
				var m queue.Message
				if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimSpace(line), ",")), &m); err != nil {
					t.Errorf("message line %q: %v", line, err)
				}
			}
		}
		if n != len(tc.msgs) {
			t.Errorf("%d message lines for %d messages:\n%s", n, len(tc.msgs), got.String())
		}
	}
	var got bytes.Buffer
	w := NewJSONListWriter(&got)
	w.Item(queue.Item{Message: msgs[0]})
	w.Finish(queue.Page{Count: 1, More: true}, nil)
	var v struct{ More bool }
	if err := json.Unmarshal(got.Bytes(), &v); err != nil || !v.More {
		t.Errorf("a listing cut by its limit: %s (%v)", got.String(), err)
	}
}

// Every kind of line the daemon writes decodes to what it carried; a message stored with newlines in it (not
// as json.Marshal writes it) still goes over as one line.
func TestListLines(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	m := testMessage("0000000000001")
	stored, _ := json.MarshalIndent(m, "", "  ") // newlines inside
	if err := writeMessageLine(bw, stored); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(bw)
	enc.Encode(listLine{Corrupt: &queue.CorruptRecord{Key: "k", Reason: "r"}})
	enc.Encode(listLine{})
	enc.Encode(listLine{wireError: toWire(fmt.Errorf("x: %w", queue.ErrStorage))})
	enc.Encode(listLine{End: &queue.Page{Count: 1, Last: m.ID, More: true}})
	bw.Flush()
	lines := strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	it, end, err := decodeListLine([]byte(lines[0]))
	want, _ := json.Marshal(m)
	if err != nil || end != nil || it.Message == nil || it.Message.ID != m.ID || string(it.JSON) != string(want) {
		t.Errorf("message line: %+v %v %v (JSON %s)", it, end, err, it.JSON)
	}
	if it, _, err := decodeListLine([]byte(lines[1])); err != nil || it.Corrupt == nil || it.Corrupt.Key != "k" {
		t.Errorf("corrupt line: %+v %v", it, err)
	}
	if it, end, err := decodeListLine([]byte(lines[2])); err != nil || end != nil || !it.BatchEnd() {
		t.Errorf("batch end line: %+v %v %v", it, end, err)
	}
	if _, _, err := decodeListLine([]byte(lines[3])); !errors.Is(err, queue.ErrStorage) {
		t.Errorf("error line: %v", err)
	}
	if _, end, err := decodeListLine([]byte(lines[4])); err != nil || end == nil || *end != (queue.Page{Count: 1, Last: m.ID, More: true}) {
		t.Errorf("end line: %v %v", end, err)
	}
	for _, bad := range []string{`{"message":{"id":}`, `{"message":[]}`, "not json\n"} {
		if _, _, err := decodeListLine([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
