package dkim

import (
	"strconv"
	"strings"
	"testing"
)

// BenchmarkSign: the CPU one attempt's signature costs, by key and message size (bench/dkim.sh measures the
// whole relay).
func BenchmarkSign(b *testing.B) {
	for _, k := range []*Key{key("contoso.test", "rsa", rsaKeyOnce()), key("contoso.test", "ed", edKeyOnce())} {
		for _, size := range []int{4096, 100_000} {
			msg := baseMsg + strings.Repeat(strings.Repeat("x", 76)+"\r\n", size/78)
			s := signerWith(k)
			b.Run(k.Algorithm()+"/"+strconv.Itoa(size), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					if _, d, err := s.Sign(strings.NewReader(msg), SignOptions{}); err != nil || !d.Signed() {
						b.Fatal(d, err)
					}
				}
			})
		}
	}
}
