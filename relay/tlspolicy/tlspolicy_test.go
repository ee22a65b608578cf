package tlspolicy

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/queue"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/smtpclient"
)

func TestSettings_Override(t *testing.T) {
	cfg := config.Default()
	cfg.Delivery.TLSPolicy = []config.TLSPolicyRule{
		{Domains: []string{"Partner.Example"}, Level: config.TLSLevelMay},
		{Domains: []string{".partner.example", "bank.example."}, Level: config.TLSLevelVerify},
		{Domains: []string{"partner.example"}, Level: config.TLSLevelNone}, // never reached: the first match wins
	}
	s := NewSettings(cfg)
	for _, c := range []struct {
		domain string
		level  config.TLSLevel
	}{
		{"partner.example", config.TLSLevelMay},
		{"PARTNER.example.", config.TLSLevelMay},
		{"mail.partner.example", config.TLSLevelVerify},
		{"a.b.partner.example", config.TLSLevelVerify},
		{"bank.example", config.TLSLevelVerify},
		{"notpartner.example", ""},
		{"sub.bank.example", ""},
		{"example", ""},
	} {
		got, ok := s.Override(c.domain)
		if got != c.level || ok != (c.level != "") {
			t.Errorf("Override(%q) = %q, %v; want %q", c.domain, got, ok, c.level)
		}
	}
	if !s.MTASTS || !s.DANE || s.Base != smtpclient.TLSOpportunistic {
		t.Errorf("defaults: %+v", s)
	}
}

func TestLevelOf(t *testing.T) {
	for _, c := range []struct {
		p    smtpclient.TLSPolicy
		want string
	}{
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSOff}, LevelNone},
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSOpportunistic}, LevelMay},
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired}, LevelEncrypt},
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Verify: true}, LevelVerify},
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSImplicit, Verify: true}, LevelVerify},
		{smtpclient.TLSPolicy{Mode: smtpclient.TLSRequired, Level: LevelDANE, Policy: PolicyDANE}, LevelDANE},
	} {
		if got := LevelOf(c.p); got != c.want {
			t.Errorf("LevelOf(%+v) = %s, want %s", c.p, got, c.want)
		}
	}
	if Enforced(smtpclient.TLSPolicy{Mode: smtpclient.TLSOpportunistic, Policy: PolicyMTASTS}) {
		t.Error("an MTA-STS policy in testing mode (opportunistic) counted as enforced")
	}
}

// TestDANEState: a probe that failed for a temporary reason keeps the state known before it.
func TestDANEState(t *testing.T) {
	var s DANEState
	if s.Active() {
		t.Fatal("active before any probe")
	}
	now := time.Now()
	if !s.Set(dnscheck.DNSSECStatus{Validating: true}, now) || !s.Active() {
		t.Fatal("a validating probe did not switch DANE on")
	}
	if s.Set(dnscheck.DNSSECStatus{Temporary: true, Detail: "timeout"}, now) || !s.Active() {
		t.Fatal("a temporary failure switched DANE off")
	}
	if !s.Set(dnscheck.DNSSECStatus{Detail: "no AD"}, now) || s.Active() {
		t.Fatal("a resolver that stopped validating left DANE on")
	}
	var never DANEState
	if never.Set(dnscheck.DNSSECStatus{Temporary: true}, now) && never.Active() {
		t.Fatal("a first temporary failure switched DANE on")
	}
}

// TestReports: counts per day, domain and policy type are merged into the queue database, read back together
// with those not yet flushed, and dropped after ReportDays.
func TestReports(t *testing.T) {
	st, err := queue.Open(queue.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	now := day
	r := NewReports(st, func() time.Time { return now })
	r.Add(Session{Domain: "a.test", Type: TypeSTS, Result: Success})
	r.Add(Session{Domain: "a.test", Type: TypeSTS, Result: "certificate-expired"})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	r.Add(Session{Domain: "a.test", Type: TypeSTS, Result: Success})
	r.Add(Session{Domain: "b.test", Type: TypeTLSA, Result: "validation-failure"})
	got, err := r.Since("2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Domain != "a.test" || got[0].Success != 2 || got[0].Failures["certificate-expired"] != 1 ||
		got[1].Domain != "b.test" || got[1].Failed() != 1 {
		t.Fatalf("Since = %+v", got)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	// A day later the counts go to a new day; fifteen days later the first day is gone.
	now = day.Add(2 * time.Hour)
	r.Add(Session{Domain: "a.test", Type: TypeSTS, Result: Success})
	now = day.AddDate(0, 0, ReportDays+1)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	var stored []DayCounts
	if err := ReadReports(st, "", func(c DayCounts) { stored = append(stored, c) }); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].Day != "2026-03-02" {
		t.Fatalf("stored after the cut-off: %+v", stored)
	}
}

// fakeTLSA answers TLSA lookups from a map; a missing name has no records.
type fakeTLSA map[string]dnscheck.TLSAAnswer

func (f fakeTLSA) LookupTLSA(_ context.Context, host string, port int) (dnscheck.TLSAAnswer, error) {
	return f[host], nil
}

// TestForHost_WithVerify: with delivery.tls = "verify", an MTA-STS policy in testing mode does not make a
// certificate failure the policy's, and TLSA records that are all unusable leave the PKIX check in place.
func TestForHost_WithVerify(t *testing.T) {
	cfg := config.Default()
	cfg.Delivery.TLS = config.DeliveryVerify
	var dane DANEState
	dane.Set(dnscheck.DNSSECStatus{Validating: true}, time.Now())
	e := New(Options{DANE: &dane, Log: slog.New(slog.DiscardHandler), Resolver: fakeTLSA{
		"mx.unusable.test": {Authentic: true, Records: []dnscheck.TLSA{{Usage: 1, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}}},
	}})
	d := &Domain{e: e, s: NewSettings(cfg), name: "unusable.test"}
	p, ref := d.ForHost(context.Background(), Host{Name: "mx.unusable.test", MXAuthentic: true, AddrsAuthentic: true})
	if ref != nil || !p.Verify || Enforced(p) || LevelOf(p) != LevelVerify {
		t.Errorf("unusable TLSA under verify: %+v %v; want delivery.tls's verified TLS", p, ref)
	}
	d.sts = &mtasts.Policy{Mode: mtasts.ModeTesting, MX: []string{"mx.testing.test"}}
	p, ref = d.ForHost(context.Background(), Host{Name: "mx.testing.test"})
	if ref != nil || !p.Verify || p.Policy != "" || Enforced(p) {
		t.Errorf("MTA-STS testing under verify: %+v %v; want delivery.tls's verified TLS, not the policy's", p, ref)
	}
}
