package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
)

// harness is a real queue store served over a real socket, with the client connected.
type harness struct {
	store  *queue.Store
	client *Client
	sock   string
	kicks  atomic.Int32
	ids    []string
}

func startHarness(t *testing.T) *harness {
	t.Helper()
	store, err := queue.Open(queue.Options{Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{store: store, sock: filepath.Join(t.TempDir(), "run", "admin.sock")}
	h.ids = []string{
		h.put(t, "Subject: one\r\n\r\nbody one\r\n", "a@example.org", "b@example.org"),
		h.put(t, "Subject: two\r\n\r\nbody two\r\n", "c@example.net"),
		h.put(t, "Subject: three\r\n\r\nbody three\r\n", "d@example.com"),
	}
	status := func() Status {
		st, _ := store.Stats()
		return Status{Version: "test", Started: time.Now().Add(-time.Hour), Queue: st,
			Listeners: []string{"127.0.0.1:2525"}}
	}
	srv := NewServer(store, status, func() { h.kicks.Add(1) }, nil)
	serve(t, srv, h.sock, "")
	h.client, err = Dial(h.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.client.Close() })
	return h
}

// serve runs srv on path until the test ends and checks that it stops cleanly.
func serve(t *testing.T, srv *Server, path, group string) {
	t.Helper()
	ln, err := srv.Listen(path, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the server stopped (cleanups run last in, first out)
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file left behind after stop: %v", err)
		}
	})
	testkit.Serve(t, "the admin server", func(ctx context.Context) error { return srv.ServeListener(ctx, ln) })
}

func (h *harness) put(t *testing.T, body string, rcpts ...string) string {
	t.Helper()
	w, err := h.store.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	var rs []queue.Recipient
	for _, r := range rcpts {
		rs = append(rs, queue.Recipient{Addr: r, State: queue.StateQueued})
	}
	id, err := w.Commit(queue.Envelope{From: "sender@example.com"}, rs)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// defer1 turns a message's recipients into deferred ones with an attempt and a next attempt an hour away.
func (h *harness) defer1(t *testing.T, id string) {
	t.Helper()
	next := time.Now().Add(time.Hour)
	for _, step := range []queue.State{queue.StateActive, queue.StateDeferred} {
		err := h.store.Update(id, func(m *queue.Message, _ *queue.Tx) error {
			for i := range m.Recipients {
				r := &m.Recipients[i]
				r.State = step
				if step == queue.StateDeferred {
					r.Attempts = 1
					r.NextAttempt = next
					r.History = append(r.History, queue.Attempt{At: time.Now(), Route: "direct",
						Relay: "mx.example.org[192.0.2.1]:25", Code: 451, Enhanced: "4.7.1", Text: "try later",
						Outcome: "deferred"})
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) states(t *testing.T, id string) []queue.State {
	t.Helper()
	m, err := h.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	var s []queue.State
	for _, r := range m.Recipients {
		s = append(s, r.State)
	}
	return s
}

func TestAdmin_ReadVerbs(t *testing.T) {
	h := startHarness(t)
	h.defer1(t, h.ids[0])

	msgs := listAll(t, h.client, queue.Filter{})
	local, err := h.store.List()
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, msgs, local) {
		t.Errorf("List over the socket differs from the store's")
	}
	if len(msgs) != 3 || msgs[0].ID != h.ids[0] {
		t.Fatalf("List: %d messages, first %v", len(msgs), msgs)
	}

	m, err := h.client.Get(h.ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Recipients[0].State != queue.StateDeferred || len(m.Recipients[0].History) != 1 ||
		m.Recipients[0].History[0].Text != "try later" {
		t.Errorf("Get: %+v", m.Recipients[0])
	}

	rc, err := h.client.Body(h.ids[1])
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "Subject: two\r\n\r\nbody two\r\n" {
		t.Errorf("Body: %q, %v", b, err)
	}

	recs, err := h.client.Corrupt()
	if err != nil || len(recs) != 0 {
		t.Errorf("Corrupt: %v, %v", recs, err)
	}

	st, err := h.client.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "test" || st.Queue.Messages != 3 || st.Queue.ByState[queue.StateDeferred] != 2 ||
		st.Uptime == "" || st.OldestAge == "" {
		t.Errorf("Status: %+v", st)
	}

	const unknown = "0000000000000"
	_, errOnline := h.client.Get(unknown)
	_, errOffline := h.store.Get(unknown)
	if !errors.Is(errOnline, queue.ErrNotFound) || errOffline == nil || errOnline.Error() != errOffline.Error() {
		t.Errorf("Get(unknown): online %v, offline %v: want the same ErrNotFound", errOnline, errOffline)
	}
	if _, err := h.client.Body(unknown); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Body(unknown): %v", err)
	}
}

func TestAdmin_WriteVerbs(t *testing.T) {
	h := startHarness(t)
	a, b, c := h.ids[0], h.ids[1], h.ids[2]
	h.defer1(t, b)

	n, err := h.client.Hold(queue.Selector{IDs: []string{a, b}})
	if err != nil || n != 2 {
		t.Fatalf("Hold: %d, %v", n, err)
	}
	if got := h.states(t, a); !reflect.DeepEqual(got, []queue.State{queue.StateHold, queue.StateHold}) {
		t.Errorf("after hold: %v", got)
	}
	if h.kicks.Load() != 0 {
		t.Error("hold woke the scheduler")
	}

	n, err = h.client.Release(queue.Selector{All: true})
	if err != nil || n != 2 {
		t.Fatalf("Release: %d, %v", n, err)
	}
	if got := h.states(t, b); !reflect.DeepEqual(got, []queue.State{queue.StateDeferred}) {
		t.Errorf("after release, the deferred one is %v", got)
	}
	if h.kicks.Load() != 1 {
		t.Errorf("release: %d kicks, want 1", h.kicks.Load())
	}

	// b was deferred an hour ahead and released due now; put it back and retry it.
	h.defer1(t, b)
	n, err = h.client.Retry(queue.Selector{IDs: []string{b}})
	if err != nil || n != 1 {
		t.Fatalf("Retry: %d, %v", n, err)
	}
	mb, _ := h.store.Get(b)
	if na := mb.Recipients[0].NextAttempt; na.After(time.Now()) {
		t.Errorf("after retry the next attempt is still %v", na)
	}
	if h.kicks.Load() != 2 {
		t.Errorf("retry: %d kicks, want 2", h.kicks.Load())
	}

	n, err = h.client.Bounce(queue.Selector{IDs: []string{c}})
	if err != nil || n != 1 {
		t.Fatalf("Bounce: %d, %v", n, err)
	}
	mc, _ := h.store.Get(c)
	if !mc.Recipients[0].BounceNow {
		t.Error("after bounce the recipient is not marked BounceNow")
	}
	if h.kicks.Load() != 3 {
		t.Errorf("bounce: %d kicks, want 3", h.kicks.Load())
	}

	n, err = h.client.Delete(queue.Selector{IDs: []string{a}})
	if err != nil || n != 1 {
		t.Fatalf("Delete: %d, %v", n, err)
	}
	if _, err := h.store.Get(a); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("deleted message still there: %v", err)
	}

	// Unknown IDs: the known ones are handled, the count says so, the error names the rest, the same words
	// as the store's.
	sel := queue.Selector{IDs: []string{b, "0000000000000"}}
	n, errOnline := h.client.Hold(sel)
	if n != 1 || !errors.Is(errOnline, queue.ErrNotFound) {
		t.Fatalf("Hold with an unknown ID: %d, %v", n, errOnline)
	}
	if _, errOffline := h.store.Hold(sel); errOffline == nil || errOffline.Error() != errOnline.Error() {
		t.Errorf("error text online %q, offline %q", errOnline, errOffline)
	}

	n, err = h.client.Delete(queue.Selector{All: true})
	if err != nil || n != 2 {
		t.Fatalf("Delete all: %d, %v", n, err)
	}
	if left, err := h.store.List(); err != nil || len(left) != 0 {
		t.Errorf("after delete -all: %d messages left, %v", len(left), err)
	}
}

func TestAdmin_BadSelectionRefused(t *testing.T) {
	h := startHarness(t)
	for _, sel := range []queue.Selector{{}, {IDs: []string{h.ids[0]}, All: true}} {
		if n, err := h.client.Delete(sel); err == nil || n != 0 {
			t.Errorf("Delete(%+v): %d, %v: want a refusal", sel, n, err)
		}
	}
	if left, err := h.store.List(); err != nil || len(left) != 3 {
		t.Errorf("after a refused selection: %d messages left (want 3), %v", len(left), err)
	}
}

// The CLI prints what the renderers make of the Queue interface: the same bytes whichever side answers.
func TestAdmin_SameOutputOnlineAndOffline(t *testing.T) {
	h := startHarness(t)
	h.defer1(t, h.ids[0])
	now := time.Now()
	render := func(q Queue) string {
		var b strings.Builder
		for _, f := range listFilters {
			for _, asJSON := range []bool{false, true} {
				fmt.Fprintf(&b, "== %+v json=%v\n", f, asJSON)
				var r ListRenderer = NewListWriter(&b, now, !f.SelectsAll())
				if asJSON {
					r = NewJSONListWriter(&b)
				}
				page, err := q.Scan(f, r.Item)
				if err != nil {
					t.Fatal(err)
				}
				corrupt, err := q.Corrupt()
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Finish(page, corrupt); err != nil {
					t.Fatal(err)
				}
			}
		}
		m, err := q.Get(h.ids[0])
		if err != nil {
			t.Fatal(err)
		}
		rc, err := q.Body(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := RenderShow(&b, m, rc, true); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	online, offline := render(h.client), render(h.store)
	if online != offline {
		t.Errorf("online:\n%s\noffline:\n%s", online, offline)
	}
	if !strings.Contains(online, "451 4.7.1 try later") || !strings.Contains(online, "body one") ||
		!strings.Contains(online, "more match") || !strings.Contains(online, "No message matches") {
		t.Errorf("rendering lacks the reply, the body, the limit or the empty filter:\n%s", online)
	}
}

// listFilters are listings the online/offline comparison runs: every filter, a limit, a page, none matching.
var listFilters = []queue.Filter{
	{},
	{State: queue.StateDeferred},
	{Domain: "example.net"},
	{Sender: "sender@example.com"},
	{Sender: "<>"},
	{Before: time.Now().Add(time.Hour)},
	{Limit: 1},
	{Limit: 1, After: "0000000000000"},
}

// listAll collects a listing (small queues only).
func listAll(t *testing.T, q Queue, f queue.Filter) []*queue.Message {
	t.Helper()
	var out []*queue.Message
	if _, err := q.Scan(f, func(it queue.Item) error {
		if it.Message != nil {
			out = append(out, it.Message)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

func TestDial_NoDaemon(t *testing.T) {
	dir := t.TempDir()
	if _, err := Dial(filepath.Join(dir, "missing.sock")); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("missing socket: %v, want ErrNoDaemon", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(stale); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("stale socket: %v, want ErrNoDaemon", err)
	}

	// A stale socket is replaced by a new server.
	srv := NewServer(fakeQueue{}, nil, nil, nil)
	serve(t, srv, stale, "")
	c, err := Dial(stale)
	if err != nil {
		t.Fatalf("after replacing the stale socket: %v", err)
	}
	defer c.Close()
	if _, err := c.Scan(queue.Filter{}, func(queue.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestListen_Refusals(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	serve(t, NewServer(fakeQueue{}, nil, nil, nil), live, "")
	if _, err := NewServer(fakeQueue{}, nil, nil, nil).Listen(live, ""); err == nil ||
		!strings.Contains(err.Error(), "another process answers") {
		t.Errorf("second server on a live socket: %v", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(fakeQueue{}, nil, nil, nil).Listen(file, ""); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the regular file was touched")
	}
	if _, err := NewServer(fakeQueue{}, nil, nil, nil).Listen("/tmp/"+strings.Repeat("x", 120), ""); err == nil ||
		!strings.Contains(err.Error(), "admin.socket") {
		t.Errorf("an overlong path: %v", err)
	}
	if _, err := NewServer(fakeQueue{}, nil, nil, nil).Listen(filepath.Join(dir, "g.sock"), "no-such-group-ptrelay"); err == nil {
		t.Error("an unknown group was accepted")
	}
}

func TestListen_SocketMode(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.sock")
	serve(t, NewServer(fakeQueue{}, nil, nil, nil), plain, "")
	if fi, err := os.Stat(plain); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket without group: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}

	testkit.RequireRoot(t, "it gives the socket to another group")
	grouped := filepath.Join(dir, "grouped.sock")
	serve(t, NewServer(fakeQueue{}, nil, nil, nil), grouped, "nogroup")
	fi, err := os.Stat(grouped)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket with group: mode %v, want 0660", fi.Mode().Perm())
	}
	if g := statGid(t, grouped); g != 65534 {
		t.Errorf("socket group %d, want nogroup (65534)", g)
	}
}

// fakeQueue stands in where the queue's content does not matter.
type fakeQueue struct{}

func (fakeQueue) Scan(queue.Filter, func(queue.Item) error) (queue.Page, error) {
	return queue.Page{}, nil
}
func (fakeQueue) Get(id string) (*queue.Message, error)   { return nil, queue.ErrNotFound }
func (fakeQueue) Body(id string) (io.ReadCloser, error)   { return nil, queue.ErrNotFound }
func (fakeQueue) Delete(queue.Selector) (int, error)      { return 0, nil }
func (fakeQueue) Hold(queue.Selector) (int, error)        { return 0, nil }
func (fakeQueue) Release(queue.Selector) (int, error)     { return 0, nil }
func (fakeQueue) Retry(queue.Selector) (int, error)       { return 0, nil }
func (fakeQueue) Bounce(queue.Selector) (int, error)      { return 0, nil }
func (fakeQueue) Corrupt() ([]queue.CorruptRecord, error) { return nil, nil }
