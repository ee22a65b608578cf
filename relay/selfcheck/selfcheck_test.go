package selfcheck

import (
	"strings"
	"testing"

	"ptrelay/dnscheck"
	"ptrelay/relay/admin"
)

// TestRender_SameWordsAsTheConsole: the terminal report is built from Checks, TLSLine and Summary, the parts the
// web console shows, so both say the same.
func TestRender_SameWordsAsTheConsole(t *testing.T) {
	r := Result{Hostname: "relay.example.com", Domain: "example.com", Verdict: dnscheck.VerdictSmarthost, Exit: 1,
		MX: []dnscheck.Check{{Title: "MX of example.com", Status: dnscheck.StatusPass, Detail: "mx.example.com"}},
		Reports: []dnscheck.Report{{Verdict: dnscheck.VerdictSmarthost, Reasons: []string{"PTR: none"},
			Checks: []dnscheck.Check{{Title: "PTR record", Status: dnscheck.StatusFail, Blocking: true, Detail: "none", Fix: "Ask your ISP."}}}},
		Smarthost:  []dnscheck.Check{{Title: "SPF of example.com", Status: dnscheck.StatusPass, Detail: "pass"}},
		TLSClients: []admin.TLSClient{{Client: "192.168.1.10", Version: "TLS1.0", Cipher: "X"}},
	}
	if got := len(r.Checks()); got != 3 {
		t.Fatalf("Checks: %d lines, want MX, PTR, SPF", got)
	}
	var b strings.Builder
	Render(&b, r)
	out := b.String()
	for _, want := range []string{
		"ptrelay check: hostname relay.example.com, domain example.com",
		"  ok      MX of example.com: mx.example.com\n",
		"  fail    PTR record: none\n          fix: Ask your ISP.\n",
		"  warn    TLS client 192.168.1.10: negotiated TLS1.0 X (allowed only by smtp.tls_legacy",
		"Verdict: smarthost.", "  - PTR: none\n",
		"Fix the lines marked fail, or configure a smart host in [[smarthosts]]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	r.HaveSmarthost = true
	if s := r.Summary(); !strings.Contains(s.Advice, "ptrelay sends through your smart host") {
		t.Errorf("with a smart host the advice is %q", s.Advice)
	}
	for v, want := range map[dnscheck.Verdict]string{dnscheck.VerdictDirectOK: "Verdict: direct-ok.", dnscheck.VerdictUnknown: "Verdict: unknown."} {
		if s := (Result{Verdict: v}).Summary(); !strings.HasPrefix(s.Headline, want) || len(s.Reasons) != 0 {
			t.Errorf("%s: %+v", v, s)
		}
	}
}
