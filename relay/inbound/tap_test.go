package inbound

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTap_ScanFastMatchesScan checks that skipping the middle of lines changes nothing the tap decides.
func TestTap_ScanFastMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{".", "\r", "\n", "a", "\r\n", "\r\n.", ".\r", "xyz"}
	for i := range 5000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		in := []byte(b.String())
		slow := &tap{inData: true, state: tapBeginLine}
		slow.scan(in)
		fast := &tap{inData: true, state: tapBeginLine}
		for rest := in; len(rest) > 0; {
			n := min(1+rng.IntN(6), len(rest))
			if fast.inData {
				fast.scanFast(rest[:n])
			}
			rest = rest[n:]
		}
		if slow.inData != fast.inData || slow.dotCR.Load() != fast.dotCR.Load() || (slow.inData && slow.state != fast.state) {
			t.Fatalf("case %d %q: scan gives inData=%v dotCR=%v state=%v, scanFast inData=%v dotCR=%v state=%v", i, in,
				slow.inData, slow.dotCR.Load(), slow.state, fast.inData, fast.dotCR.Load(), fast.state)
		}
	}
}
