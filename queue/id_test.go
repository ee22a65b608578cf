package queue

import (
	"sort"
	"strings"
	"testing"
	"time"
)

func TestID_EncodeDecode(t *testing.T) {
	cases := []struct {
		name string
		v    uint64
		want string
	}{
		{"zero", 0, "0000000000000"},
		{"one", 1, "0000000000001"},
		{"thirty-one", 31, "000000000000Z"},
		{"thirty-two", 32, "0000000000010"},
		{"max", ^uint64(0), "FZZZZZZZZZZZZ"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := encodeID(c.v)
			if got != c.want {
				t.Fatalf("encodeID(%d) = %q, want %q", c.v, got, c.want)
			}
			back, ok := decodeID(got)
			if !ok || back != c.v {
				t.Fatalf("decodeID(%q) = %d, %v", got, back, ok)
			}
		})
	}
}

func TestID_Valid(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"0000000000000", true},
		{"FZZZZZZZZZZZZ", true},
		{"GZZZZZZZZZZZZ", false}, // 65 bits
		{"000000000000", false},  // short
		{"00000000000000", false},
		{"000000000000I", false}, // not in Crockford's alphabet
		{"000000000000a", false}, // lower case
		{"../../etc/pas", false},
		{"tmp-123456789", false},
		{"", false},
	}
	for _, c := range cases {
		if got := ValidID(c.id); got != c.want {
			t.Errorf("ValidID(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

func TestID_SortableUniqueMonotonic(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)}
	g := idGen{now: clock.now}
	var ids []string
	seen := map[string]bool{}
	steps := []time.Duration{0, 0, time.Microsecond, -time.Hour, 0, time.Second, 2 * time.Hour}
	for _, d := range steps {
		clock.t = clock.t.Add(d)
		for range 5000 { // more than 4096 per microsecond: the counter borrows
			id := g.next()
			if seen[id] {
				t.Fatalf("duplicate ID %s", id)
			}
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("IDs not increasing as strings")
	}
	// The time is recoverable, to the microsecond, for IDs that did not borrow.
	g2 := idGen{now: clock.now}
	at, ok := IDTime(g2.next())
	if !ok || !at.Equal(clock.t.Truncate(time.Microsecond)) {
		t.Fatalf("IDTime = %v, %v; want %v", at, ok, clock.t)
	}
	// floor: after a restart with a clock behind the stored IDs, new IDs still sort last.
	g3 := idGen{now: func() time.Time { return clock.t.Add(-24 * time.Hour) }}
	g3.floor(ids[len(ids)-1])
	if next := g3.next(); next <= ids[len(ids)-1] {
		t.Fatalf("after floor: %s not after %s", next, ids[len(ids)-1])
	}
}

// FuzzValidID: admin input reaches spool paths only through ValidID, so whatever it accepts must be a canonical
// ID (encoding its value gives the same string back) and a plain file name.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"0000000000000", "FZZZZZZZZZZZZ", "GZZZZZZZZZZZZ", "../../etc/pas", "0000000000O0I", "tmp-123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := decodeID(s)
		if ok != ValidID(s) {
			t.Fatal("decodeID and ValidID disagree")
		}
		if !ok {
			return
		}
		if encodeID(v) != s {
			t.Fatalf("%q decodes to %d, which encodes to %q", s, v, encodeID(v))
		}
		if strings.ContainsAny(s, "/.\\\x00") {
			t.Fatalf("%q accepted but not a plain file name", s)
		}
	})
}
