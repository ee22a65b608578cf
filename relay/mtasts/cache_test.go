package mtasts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

var errTemp = errors.New("SERVFAIL")

// world is the DNS and the web of one domain as the cache sees them, with a clock the test moves.
type world struct {
	mu       sync.Mutex
	now      time.Time
	txt      []string // the _mta-sts TXT records; nil: NXDOMAIN
	txtErr   error
	policy   string // served at the policy URL
	fetchErr error
	txts     int // lookups made
	fetches  int // fetches made
}

func (w *world) lookup(_ context.Context, name string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.txts++
	if name != "_mta-sts.example.test" {
		return nil, fmt.Errorf("unexpected TXT lookup of %s", name)
	}
	if w.txtErr != nil {
		return nil, w.txtErr
	}
	if w.txt == nil {
		return nil, errors.New("NXDOMAIN")
	}
	return w.txt, nil
}

func (w *world) fetch(_ context.Context, domain string) (string, *Policy, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fetches++
	if w.fetchErr != nil {
		return "", nil, w.fetchErr
	}
	p, err := ParsePolicy(w.policy)
	if err != nil {
		return "", nil, &FetchError{Result: "sts-policy-invalid", Err: err}
	}
	return w.policy, p, nil
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *world) counts() (txts, fetches int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.txts, w.fetches
}

func (w *world) advance(d time.Duration) { w.set(func(w *world) { w.now = w.now.Add(d) }) }

func policyText(mode Mode, mx string, maxAge int) string {
	return fmt.Sprintf("version: STSv1\nmode: %s\nmx: %s\nmax_age: %d\n", mode, mx, maxAge)
}

func newWorld(t *testing.T) (*world, *Cache, *MemStore) {
	w := &world{now: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), txt: []string{"v=STSv1; id=one;"},
		policy: policyText(ModeEnforce, "mx1.example.test", 7*86400)}
	st := &MemStore{}
	c := NewCache(Options{Store: st, LookupTXT: w.lookup, Fetch: w.fetch,
		Temporary: func(err error) bool { return errors.Is(err, errTemp) },
		Now:       func() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now },
		Log:       slog.New(slog.DiscardHandler)})
	return w, c, st
}

// get asks for the policy and checks what came back: the mx it allows ("" for no policy) and the network use.
func get(t *testing.T, w *world, c *Cache, wantMX string, wantTXT, wantFetch int) Result {
	t.Helper()
	txt0, f0 := w.counts()
	r, err := c.Get(context.Background(), "Example.Test.")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got := ""
	if r.Policy != nil {
		got = r.Policy.MX[0]
	}
	txt1, f1 := w.counts()
	if got != wantMX || txt1-txt0 != wantTXT || f1-f0 != wantFetch {
		t.Fatalf("Get = mx %q (TXT lookups %d, fetches %d); want %q (%d, %d)", got, txt1-txt0, f1-f0, wantMX, wantTXT, wantFetch)
	}
	return r
}

// TestCache_Lifecycle walks one domain's policy through the cache's rules with an injected clock.
func TestCache_Lifecycle(t *testing.T) {
	w, c, st := newWorld(t)

	// First use: TXT, then fetch; stored.
	get(t, w, c, "mx1.example.test", 1, 1)
	if all, _ := st.All(); len(all) != 1 || all[0].ID != "one" {
		t.Fatalf("stored %+v", all)
	}
	// Within the hour: no network at all.
	w.advance(59 * time.Minute)
	get(t, w, c, "mx1.example.test", 0, 0)
	// After an hour: the TXT record again (same id: no fetch).
	w.advance(2 * time.Minute)
	get(t, w, c, "mx1.example.test", 1, 0)

	// The id changes: seen at the next hourly look, the new policy fetched at once.
	w.set(func(w *world) {
		w.txt = []string{"v=STSv1; id=two;"}
		w.policy = policyText(ModeEnforce, "mx2.example.test", 7*86400)
	})
	w.advance(30 * time.Minute)
	get(t, w, c, "mx1.example.test", 0, 0) // not yet an hour
	w.advance(31 * time.Minute)
	get(t, w, c, "mx2.example.test", 1, 1)

	// An HTTPS outage with a new id: the policy held survives, and the failure is noted with the id.
	w.set(func(w *world) {
		w.txt = []string{"v=STSv1; id=three;"}
		w.fetchErr = &FetchError{Result: "sts-policy-fetch-error", Err: errors.New("connection refused")}
	})
	w.advance(61 * time.Minute)
	get(t, w, c, "mx2.example.test", 1, 1)
	e, _, _ := st.Load("example.test")
	if e.RetryID != "three" || e.LastError == "" {
		t.Errorf("after the failed fetch: %+v", e)
	}
	// The TXT record disappearing keeps the policy too (RFC 8461 5.1), as does a DNS failure.
	w.set(func(w *world) { w.txt = nil })
	w.advance(61 * time.Minute)
	get(t, w, c, "mx2.example.test", 1, 0)
	w.set(func(w *world) { w.txtErr = errTemp })
	w.advance(61 * time.Minute)
	get(t, w, c, "mx2.example.test", 1, 0)

	// The daily refresh (Maintain) cannot fetch either: the policy stays until it expires, then it is dropped.
	w.set(func(w *world) { w.txtErr = nil; w.txt = []string{"v=STSv1; id=three;"} })
	w.advance(24 * time.Hour)
	c.Maintain(context.Background())
	if _, ok, _ := st.Load("example.test"); !ok {
		t.Fatal("Maintain dropped a policy that has not expired")
	}
	w.advance(7 * 24 * time.Hour)
	c.Maintain(context.Background())
	if _, ok, _ := st.Load("example.test"); ok {
		t.Fatal("an expired policy that could not be renewed was kept")
	}
	// Nothing held and the policy still unreachable: no policy (deliver as before), remembered for the backoff.
	get(t, w, c, "", 1, 1)
	w.advance(4 * time.Minute)
	get(t, w, c, "", 0, 0)
	w.advance(2 * time.Minute)
	w.set(func(w *world) { w.fetchErr = nil })
	get(t, w, c, "mx2.example.test", 1, 1)
}

// TestCache_DailyRefresh: Maintain fetches a policy again a day after it was fetched, which extends its life;
// a policy unused for 180 days is dropped.
func TestCache_DailyRefresh(t *testing.T) {
	w, c, st := newWorld(t)
	get(t, w, c, "mx1.example.test", 1, 1)
	e0, _, _ := st.Load("example.test")
	w.advance(23 * time.Hour)
	c.Maintain(context.Background())
	if _, f := w.counts(); f != 1 {
		t.Fatalf("refreshed before a day: %d fetches", f)
	}
	w.advance(2 * time.Hour)
	c.Maintain(context.Background())
	e1, _, _ := st.Load("example.test")
	if _, f := w.counts(); f != 2 || !e1.Expires.After(e0.Expires) {
		t.Fatalf("daily refresh: %d fetches, expires %v (was %v)", f, e1.Expires, e0.Expires)
	}
	// Kept fresh by the daily pass but never used again: gone after 180 days.
	for range 181 {
		w.advance(24 * time.Hour)
		c.Maintain(context.Background())
	}
	if _, ok, _ := st.Load("example.test"); ok {
		t.Fatal("a policy unused for 180 days was kept")
	}
}

// TestCache_NoPolicy: a domain without MTA-STS costs one TXT lookup per backoff period; a temporary DNS failure
// with nothing held is an error (the delivery waits); mode none and testing are returned as they are.
func TestCache_NoPolicy(t *testing.T) {
	w, c, st := newWorld(t)
	w.set(func(w *world) { w.txt = []string{"v=spf1 -all"} })
	get(t, w, c, "", 1, 0)
	get(t, w, c, "", 0, 0)
	w.advance(FailureBackoff)
	get(t, w, c, "", 1, 0)
	if all, _ := st.All(); len(all) != 0 {
		t.Errorf("a domain without a policy was written to the database: %+v", all)
	}
	if l, _ := c.List(""); len(l) != 1 || l[0].Policy != nil {
		t.Errorf("List = %+v; want the remembered domain without a policy", l)
	}

	w.advance(FailureBackoff)
	w.set(func(w *world) { w.txtErr = errTemp })
	if _, err := c.Get(context.Background(), "example.test"); !errors.Is(err, ErrTemporary) {
		t.Errorf("TXT SERVFAIL with nothing held: %v; want ErrTemporary", err)
	}

	w.set(func(w *world) {
		w.txtErr = nil
		w.txt = []string{"v=STSv1; id=t;"}
		w.policy = policyText(ModeTesting, "mx9.example.test", 86400)
	})
	if r := get(t, w, c, "mx9.example.test", 1, 1); r.Policy.Mode != ModeTesting {
		t.Errorf("mode %s, want testing", r.Policy.Mode)
	}
	// Flush drops it: the next use fetches again.
	if n, err := c.Flush("example.test"); err != nil || n != 1 {
		t.Errorf("Flush = %d, %v", n, err)
	}
	get(t, w, c, "mx9.example.test", 1, 1)
}

// TestCache_Refresh: before a bounce, Refresh looks for a new id at once; it reports a change only when a new
// policy was fetched.
func TestCache_Refresh(t *testing.T) {
	w, c, _ := newWorld(t)
	get(t, w, c, "mx1.example.test", 1, 1)
	if changed, err := c.Refresh(context.Background(), "example.test"); err != nil || changed {
		t.Errorf("Refresh with the same id = %v, %v; want no change", changed, err)
	}
	w.set(func(w *world) {
		w.txt = []string{"v=STSv1; id=two;"}
		w.policy = policyText(ModeEnforce, "mx2.example.test", 86400)
	})
	if changed, err := c.Refresh(context.Background(), "example.test"); err != nil || !changed {
		t.Errorf("Refresh with a new id = %v, %v; want a change", changed, err)
	}
	get(t, w, c, "mx2.example.test", 0, 0)
}
