package dnscheck_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"ptrelay/dnscheck"
)

// fakeDNS serves SPF fuzzing from memory: the record under test at fuzz.test, a few fixed names around it,
// and every other name a nonexistent one, so the fuzzer exercises the parser and the limits, not the network.
type fakeDNS struct{ txt map[string][]string }

func (f fakeDNS) nx(name, typ string) error {
	return &dnscheck.Error{Name: name, Type: typ, Kind: dnscheck.ErrNXDomain}
}

func (f fakeDNS) LookupMX(_ context.Context, d string) ([]dnscheck.MX, error) {
	if d == "fuzz.test" {
		return []dnscheck.MX{{Host: "mx.fuzz.test", Pref: 10}}, nil
	}
	return nil, f.nx(d, "MX")
}

func (f fakeDNS) LookupAddrs(ctx context.Context, h string) ([]netip.Addr, error) {
	return f.LookupA(ctx, h)
}

func (f fakeDNS) LookupA(_ context.Context, h string) ([]netip.Addr, error) {
	if strings.HasSuffix(h, "fuzz.test") {
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
	}
	return nil, f.nx(h, "A")
}

func (f fakeDNS) LookupAAAA(_ context.Context, h string) ([]netip.Addr, error) {
	return nil, f.nx(h, "AAAA")
}

func (f fakeDNS) LookupPTR(_ context.Context, a netip.Addr) ([]string, error) {
	return []string{"mail.fuzz.test"}, nil
}

func (f fakeDNS) LookupTXT(_ context.Context, n string) ([]string, error) {
	if t, ok := f.txt[strings.TrimSuffix(strings.ToLower(n), ".")]; ok {
		return t, nil
	}
	return nil, f.nx(n, "TXT")
}

func FuzzEvaluateSPF(f *testing.F) {
	f.Add("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.1")
	f.Add("v=spf1 a mx include:inc.fuzz.test redirect=inc.fuzz.test", "2001:db8::1")
	f.Add("v=spf1 exists:%{ir}.%{v}.%{d2}.x a:%{l1r-}.fuzz.test/24//64 ~all", "192.0.2.9")
	f.Add("v=spf1 include:fuzz.test", "192.0.2.1") // includes itself: the lookup limit must stop it
	f.Fuzz(func(t *testing.T, record, ip string) {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		dns := fakeDNS{txt: map[string][]string{
			"fuzz.test":     {record},
			"inc.fuzz.test": {"v=spf1 ip4:192.0.2.1 -all"},
		}}
		out := dnscheck.EvaluateSPF(context.Background(), dns, a, "fuzz.test")
		switch out.Result {
		case dnscheck.SPFPass, dnscheck.SPFFail, dnscheck.SPFSoftFail, dnscheck.SPFNeutral, dnscheck.SPFNone:
		case dnscheck.SPFPermError, dnscheck.SPFTempError:
			if out.Detail == "" {
				t.Fatalf("%s without detail for %q", out.Result, record)
			}
		default:
			t.Fatalf("result %q for %q", out.Result, record)
		}
		if out.Lookups > 11 {
			t.Fatalf("%d lookups for %q: the RFC 7208 limit did not hold", out.Lookups, record)
		}
	})
}
