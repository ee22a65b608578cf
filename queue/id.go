package queue

import (
	"sync"
	"time"
)

// A queue ID is a 64-bit number written as 13 characters of Crockford's base32 alphabet, most significant first.
// The number is the arrival time in microseconds shifted left by idCounterBits, plus a counter, so IDs sort by
// time both as numbers and as strings (the alphabet is in ASCII order), are unique within a process even when the
// clock stands still or steps back, and are safe as file names (spool/<ID>) and in SMTP replies.
const (
	idLen         = 13
	idAlphabet    = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	idCounterBits = 12 // 4096 IDs per microsecond before the counter borrows from the next one
)

// idValue maps an ASCII byte to its base32 value, or 0xff when the byte is not in the alphabet.
var idValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(idAlphabet); i++ {
		t[idAlphabet[i]] = byte(i)
	}
	return t
}()

func encodeID(v uint64) string {
	var b [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		b[i] = idAlphabet[v&31]
		v >>= 5
	}
	return string(b[:])
}

func decodeID(s string) (uint64, bool) {
	if len(s) != idLen {
		return 0, false
	}
	var v uint64
	for i := 0; i < idLen; i++ {
		d := idValue[s[i]]
		// 13 characters hold 65 bits: the first one may only carry the top 4.
		if d == 0xff || (i == 0 && d > 15) {
			return 0, false
		}
		v = v<<5 | uint64(d)
	}
	return v, true
}

// ValidID reports whether s has the form of a queue ID. Admin input is checked with it before it is used to
// build a spool path.
func ValidID(s string) bool {
	_, ok := decodeID(s)
	return ok
}

// IDTime returns the time encoded in a queue ID (microsecond precision).
func IDTime(id string) (time.Time, bool) {
	v, ok := decodeID(id)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(v >> idCounterBits)), true
}

// idGen hands out strictly increasing IDs.
type idGen struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

// floor makes every later ID greater than id, so IDs stay unique across restarts even if the clock went back.
func (g *idGen) floor(id string) {
	if v, ok := decodeID(id); ok {
		g.mu.Lock()
		g.last = max(g.last, v)
		g.mu.Unlock()
	}
}

func (g *idGen) next() string {
	us := g.now().UnixMicro()
	v := uint64(max(us, 0)) << idCounterBits
	g.mu.Lock()
	if v <= g.last {
		v = g.last + 1
	}
	g.last = v
	g.mu.Unlock()
	return encodeID(v)
}
