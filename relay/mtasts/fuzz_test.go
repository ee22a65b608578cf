package mtasts

import (
	"reflect"
	"testing"
)

// FuzzParsePolicy: policy files come from any web server. Parsing must not panic; a policy that parses has a
// known mode, max_age within the cap, and mx patterns that are host names (so Matches cannot be tricked), and
// printing it gives text that parses to the same policy.
func FuzzParsePolicy(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 99999999999\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(text)
		if err != nil {
			return
		}
		if p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone {
			t.Fatalf("mode %q", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %v", p.MaxAge)
		}
		for _, mx := range p.MX {
			if _, err := parseMXPattern(mx); err != nil {
				t.Fatalf("mx %q kept: %v", mx, err)
			}
		}
		again, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", p, p.String(), again, err)
		}
	})
}

// FuzzFindRecord: TXT records are anyone's. An id, when found, is 1 to 32 letters and digits.
func FuzzFindRecord(f *testing.F) {
	f.Add("v=STSv1; id=20190429T010101;", "v=spf1 -all")
	f.Fuzz(func(t *testing.T, a, b string) {
		id, err := FindRecord([]string{a, b})
		if err == nil && !validID(id) {
			t.Fatalf("id %q", id)
		}
	})
}
