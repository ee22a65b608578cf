package queue

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// scanIDs runs a scan and returns the IDs it handed over, with its Page.
func scanIDs(t *testing.T, s *Store, f Filter) ([]string, Page) {
	t.Helper()
	var ids []string
	page, err := s.Scan(f, func(it Item) error {
		if it.Message != nil {
			ids = append(ids, it.Message.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%+v): %v", f, err)
	}
	return ids, page
}

func TestScan_Filters(t *testing.T) {
	clock := &fakeClock{t: t0}
	s := openTest(t, t.TempDir(), func(o *Options) { o.Now = clock.now })
	commit := func(from string, to ...string) string {
		t.Helper()
		w, _ := s.NewWriter()
		w.Write(body("f", 10))
		id, err := w.Commit(Envelope{From: from}, rcpts(to...))
		if err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Hour)
		return id
	}
	a := commit("alice@example.test", "x@gmail.example", "y@other.example")
	b := commit("", "z@Gmail.Example")                     // a bounce, one hour later
	c := commit("bob@Example.Test", "w@other.example")     // two hours later
	d := commit("carol@elsewhere.test", "v@gmail.example") // three hours later
	// a: the gmail recipient deferred, the other still queued; d: its only recipient held.
	if err := s.Update(a, func(m *Message, tx *Tx) error { m.Recipients[0].State = StateActive; return nil }); err != nil {
		t.Fatal(err)
	}
	err := s.Update(a, func(m *Message, tx *Tx) error { m.Recipients[0].State = StateDeferred; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(Selector{IDs: []string{d}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{a, b, c, d}},
		{"state", Filter{State: StateDeferred}, []string{a}},
		{"state queued", Filter{State: StateQueued}, []string{a, b, c}},
		{"domain, any case", Filter{Domain: "GMAIL.example"}, []string{a, b, d}},
		{"state and domain on one recipient", Filter{State: StateQueued, Domain: "gmail.example"}, []string{b}},
		{"sender address, any case", Filter{Sender: "BOB@example.test"}, []string{c}},
		{"sender domain", Filter{Sender: "@example.test"}, []string{a, c}},
		{"null sender", Filter{Sender: "<>"}, []string{b}},
		{"older", Filter{Before: t0.Add(90 * time.Minute)}, []string{a, b}},
		{"everything at once", Filter{State: StateHold, Domain: "gmail.example", Sender: "@elsewhere.test",
			Before: clock.t}, []string{d}},
		{"nothing", Filter{Domain: "nowhere.example"}, nil},
	} {
		got, page := scanIDs(t, s, tc.f)
		if !slices.Equal(got, tc.want) || page.Count != len(tc.want) || page.More {
			t.Errorf("%s: %v %+v, want %v", tc.name, got, page, tc.want)
		}
	}
}

func TestScan_LimitAndPaging(t *testing.T) {
	s := openTest(t, t.TempDir())
	var all []string
	for range 10 {
		all = append(all, put(t, s, body("p", 10), "r@example.org"))
	}
	got, page := scanIDs(t, s, Filter{Limit: 3})
	if !slices.Equal(got, all[:3]) || page != (Page{Count: 3, Last: all[2], More: true}) {
		t.Fatalf("limit 3: %v %+v", got, page)
	}
	if _, page := scanIDs(t, s, Filter{Limit: 10}); page.More {
		t.Fatal("limit 10 of 10: More set, yet nothing more matches")
	}
	var paged []string
	f := Filter{Limit: 4}
	for i := 0; ; i++ {
		if i == 5 {
			t.Fatal("paging does not end")
		}
		got, page := scanIDs(t, s, f)
		paged = append(paged, got...)
		if !page.More {
			break
		}
		f.After = page.Last
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages = %v, want %v", paged, all)
	}
	if got, _ := scanIDs(t, s, Filter{After: all[8]}); !slices.Equal(got, all[9:]) {
		t.Fatalf("after the 9th: %v", got)
	}
}

// A scan hands its messages over a batch at a time, reading the next batch only after the previous one was
// handed over: the first message arrives before the rest is read, and the scan never holds more than a batch.
// Shown by changing the queue from inside fn: a message removed while the first batch is being handed over is
// not listed, and one committed then is.
func TestScan_StreamsInBatches(t *testing.T) {
	defer func(b, e int) { scanBatch, scanExamine = b, e }(scanBatch, scanExamine)
	scanBatch, scanExamine = 4, 4
	s := openTest(t, t.TempDir())
	var ids []string
	for range 12 {
		ids = append(ids, put(t, s, body("s", 10), "r@example.org"))
	}
	var got []string
	var added string
	_, err := s.Scan(Filter{}, func(it Item) error {
		if it.Message == nil {
			return nil // the end of a batch
		}
		got = append(got, it.Message.ID)
		if len(got) == 1 {
			if _, err := s.Delete(Selector{IDs: []string{ids[11]}}); err != nil {
				return err
			}
			added = put(t, s, body("late", 10), "r@example.org")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(ids[:11]), added)
	if !slices.Equal(got, want) {
		t.Fatalf("scan = %v\nwant   %v", got, want)
	}
}

// With a selective filter, a read transaction stops after scanExamine records even when few of them match.
func TestScan_SelectiveFilterReadsInSteps(t *testing.T) {
	defer func(b, e int) { scanBatch, scanExamine = b, e }(scanBatch, scanExamine)
	scanBatch, scanExamine = 100, 3
	s := openTest(t, t.TempDir())
	var ids []string
	for i := range 9 {
		to := "r@example.org"
		if i == 8 {
			to = "r@rare.example"
		}
		ids = append(ids, put(t, s, body("s", 10), to))
	}
	// Deleting the rare one from fn of an earlier match proves the later record was read after it.
	first := true
	var got []string
	_, err := s.Scan(Filter{Domain: "example.org"}, func(it Item) error {
		if it.Message == nil {
			return nil
		}
		got = append(got, it.Message.ID)
		if first {
			first = false
			_, err := s.Delete(Selector{IDs: []string{ids[7]}})
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids[:7]) {
		t.Fatalf("scan = %v, want the first 7 (the 8th deleted before it was read)", got)
	}
}

func TestScan_CorruptOnlyUnfiltered(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	good := put(t, s, body("g", 10), "a@example.org")
	bad := put(t, s, body("b", 10), "a@example.org")
	s.Close()
	rawDB(t, dir, func(b buckets) { b.msgs.Put([]byte(bad), []byte("{")) })
	s = openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	var items []string
	s.Scan(Filter{}, func(it Item) error {
		if it.Corrupt != nil {
			items = append(items, "corrupt "+it.Corrupt.Key)
		} else if it.Message != nil {
			items = append(items, it.Message.ID)
		}
		return nil
	})
	if !slices.Equal(items, []string{good, "corrupt " + bad}) {
		t.Fatalf("unfiltered scan = %v", items)
	}
	ids, _ := scanIDs(t, s, Filter{Domain: "example.org"})
	if !slices.Equal(ids, []string{good}) {
		t.Fatalf("filtered scan = %v", ids)
	}
	var corrupt int
	s.Scan(Filter{Domain: "example.org"}, func(it Item) error {
		if it.Corrupt != nil {
			corrupt++
		}
		return nil
	})
	if corrupt != 0 {
		t.Fatal("a filtered scan reported a damaged record")
	}
}

// Item.JSON, taken from the stored record, is exactly what json.Marshal makes of the Message, for a spooled
// message (whose record has a field more) as for an inline one, with every field set.
func TestScan_JSONIsTheMessageEncoding(t *testing.T) {
	s := openTest(t, t.TempDir(), func(o *Options) { o.InlineMax = 100 })
	for _, size := range []int{10, 1000} {
		w, _ := s.NewWriter()
		w.Write(body("j", size))
		id, err := w.Commit(Envelope{From: "<a&b>@example.test", BodyType: "8BITMIME", SMTPUTF8: true, EnvID: "e",
			Ret: "HDRS", ClientAddr: "192.0.2.1:25", ClientHelo: "h", AuthUser: "u", Session: "s"},
			[]Recipient{{Addr: "r@example.org", State: StateQueued, Notify: []string{"FAILURE", "DELAY"}, ORcpt: "rfc822;r@example.org"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(id, func(m *Message, tx *Tx) error {
			r := &m.Recipients[0]
			r.State, r.Attempts, r.NextAttempt = StateActive, 1, t0.Add(time.Hour)
			r.History = append(r.History, Attempt{At: t0, Route: "direct", Relay: "mx[192.0.2.2]:25", Code: 451,
				Enhanced: "4.7.1", Text: "later\nagain", Outcome: "deferred"})
			r.HoldPending, r.DelayWarned, r.BounceNow = true, true, true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if _, err := s.Scan(Filter{}, func(it Item) error {
		if it.Message == nil {
			return nil
		}
		n++
		want, _ := json.Marshal(it.Message)
		if !bytes.Equal(it.JSON, want) {
			t.Errorf("Item.JSON:\n%s\njson.Marshal(Message):\n%s", it.JSON, want)
		}
		return nil
	}); err != nil || n != 2 {
		t.Fatalf("scan: %d messages, %v", n, err)
	}
}
