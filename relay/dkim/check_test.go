package dkim

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
)

// stubDNS answers TXT lookups from a map; names in temp fail temporarily, others do not exist.
type stubDNS struct {
	txt  map[string][]string
	temp map[string]bool
}

func (d stubDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	if d.temp[name] {
		return nil, &dnscheck.Error{Name: name, Type: "TXT", Kind: dnscheck.ErrTemporary, Detail: "SERVFAIL"}
	}
	if t, ok := d.txt[name]; ok {
		return t, nil
	}
	return nil, &dnscheck.Error{Name: name, Type: "TXT", Kind: dnscheck.ErrNXDomain}
}

func (stubDNS) LookupMX(context.Context, string) ([]dnscheck.MX, error) {
	return nil, errors.New("stub")
}
func (stubDNS) LookupAddrs(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("stub")
}
func (stubDNS) LookupA(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("stub") }
func (stubDNS) LookupAAAA(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("stub")
}
func (stubDNS) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, errors.New("stub")
}

func (d stubDNS) with(name string, records ...string) stubDNS { d.txt[name] = records; return d }

func newDNS() stubDNS { return stubDNS{txt: map[string][]string{}, temp: map[string]bool{}} }

func levels(cs []dnscheck.Check) (out []string) {
	for _, c := range cs {
		out = append(out, c.Level())
	}
	return out
}

var checkNow = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// Each published-record case gives its line, with the fix the issue lists.
func TestCheck_PublishedKey(t *testing.T) {
	k := key("contoso.test", "ptr2026a", rsaKeyOnce())
	k.Modified = checkNow.AddDate(0, -2, 0)
	rec, err := k.Record()
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Join(rec.Strings, "")
	otherRec, _ := key("contoso.test", "ptr2026a", otherRSAOnce()).Record()
	for _, tc := range []struct {
		name    string
		dns     stubDNS
		levels  []string
		detail  string
		fix     string
		blocked bool
	}{
		{name: "published", dns: newDNS().with(k.Name(), good), levels: []string{"ok"},
			detail: "publishes the key of /etc/ptrelay/dkim/contoso.test.ptr2026a.pem (rsa-2048): a probe message signed with it verifies"},
		{name: "not published", dns: newDNS(), levels: []string{"fail"}, detail: "no TXT record at ptr2026a._domainkey.contoso.test",
			fix: `publish this TXT record (one record, these strings): ptr2026a._domainkey.contoso.test. IN TXT ( "v=DKIM1; k=rsa; "`},
		{name: "two records", dns: newDNS().with(k.Name(), good, good), levels: []string{"fail"}, detail: "2 TXT records at ptr2026a._domainkey.contoso.test",
			fix: "delete every TXT record at ptr2026a._domainkey.contoso.test but the one `ptrelay dkim show` prints"},
		{name: "revoked", dns: newDNS().with(k.Name(), "v=DKIM1; k=rsa; p="), levels: []string{"fail"}, detail: "is revoked (p= is empty)",
			fix: "if this key should sign, publish this TXT record"},
		{name: "another key", dns: newDNS().with(k.Name(), otherRec.Value), levels: []string{"fail"},
			detail: "does not verify mail signed with /etc/ptrelay/dkim/contoso.test.ptr2026a.pem (signature did not verify",
			fix:    "replace the record with the one `ptrelay dkim show` prints"},
		{name: "not a key record", dns: newDNS().with(k.Name(), "google-site-verification=abc"), levels: []string{"fail"},
			detail: "is not a DKIM key record", fix: "replace it: publish this TXT record"},
		{name: "temporary DNS failure", dns: stubDNS{txt: map[string][]string{}, temp: map[string]bool{k.Name(): true}},
			levels: []string{"unknown"}, detail: "did not finish", fix: "run the check again"},
		{name: "testing flag", dns: newDNS().with(k.Name(), good+"; t=y"), levels: []string{"ok", "warn"},
			detail: "publishes the key of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := signerWith(k).Check(context.Background(), tc.dns, "contoso.test", checkNow)
			if l := levels(got); strings.Join(l, ",") != strings.Join(tc.levels, ",") {
				t.Fatalf("levels %v, want %v: %+v", l, tc.levels, got)
			}
			if !strings.Contains(got[0].Detail, tc.detail) || !strings.Contains(got[0].Fix, tc.fix) {
				t.Errorf("line %+v\nwant detail %q, fix %q", got[0], tc.detail, tc.fix)
			}
			if got[0].ID != "dkim:ptr2026a._domainkey.contoso.test" {
				t.Errorf("ID %q", got[0].ID)
			}
		})
	}
}

func TestCheck_Warnings(t *testing.T) {
	rsaK := key("contoso.test", "ptr2026a", rsaKeyOnce())
	edK := key("contoso.test", "ptr2026e", edKeyOnce())
	old := key("fabrikam.test", "ptr2024a", rsaKeyOnce())
	old.Modified = checkNow.AddDate(-1, -2, 0)
	dns := publish(t, rsaK, edK, old)
	sd := newDNS()
	for n, r := range dns {
		sd = sd.with(n, r...)
	}
	sd = sd.with("ptr2026t._domainkey.contoso.test")
	s := signerWith(rsaK, edK, old)

	got := s.Check(context.Background(), sd, "contoso.test", checkNow)
	if l := levels(got); strings.Join(l, ",") != "ok,ok" {
		t.Errorf("RSA + Ed25519: %v %+v", l, got)
	}
	edOnly := signerWith(key("contoso.test", "ptr2026e", edKeyOnce()))
	got = edOnly.Check(context.Background(), sd, "contoso.test", checkNow)
	if l := levels(got); strings.Join(l, ",") != "ok,warn" || !strings.Contains(got[1].Detail, "Ed25519 only") ||
		!strings.Contains(got[1].Fix, "add an RSA key") {
		t.Errorf("Ed25519 only: %v %+v", l, got)
	}
	got = s.Check(context.Background(), sd, "fabrikam.test", checkNow)
	if l := levels(got); strings.Join(l, ",") != "ok,warn" || !strings.Contains(got[1].Detail, "is 14 months old") ||
		!strings.Contains(got[1].Fix, "rotate it") {
		t.Errorf("old key: %v %+v", l, got)
	}
	got = s.Check(context.Background(), sd, "example.org", checkNow)
	if l := levels(got); strings.Join(l, ",") != "warn" || !strings.Contains(got[0].Fix, "enable DKIM for example.org: run `ptrelay dkim keygen -domain example.org") {
		t.Errorf("no key: %v %+v", l, got)
	}
}

// A key this shell cannot read is still looked up; the line says why it was not compared.
func TestCheck_UnreadableKey(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "relay.contoso.test"
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "contoso.test", Selector: "s1", PrivateKeyFile: filepath.Join(dir, "gone.pem")}}
	s := LoadEach(cfg)
	got := s.Check(context.Background(), newDNS().with("s1._domainkey.contoso.test", "v=DKIM1; k=rsa; p=AAAA"), "contoso.test", checkNow)
	if len(got) != 1 || got[0].Level() != "unknown" || !strings.Contains(got[0].Detail, "cannot be read here") ||
		got[0].Fix != "run `ptrelay check` as root" {
		t.Errorf("%+v", got)
	}
	if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "gone.pem cannot be read") {
		t.Errorf("Load: %v", err)
	}
}

func TestCheckDMARC(t *testing.T) {
	k := key("contoso.test", "ptr2026a", edKeyOnce())
	s := signerWith(k)
	for _, tc := range []struct {
		name, domain string
		dns          stubDNS
		level        string
		detail, fix  string
	}{
		{"aligned", "contoso.test", newDNS().with("_dmarc.contoso.test", "v=DMARC1; p=reject; rua=mailto:d@contoso.test"),
			"ok", "p=reject (_dmarc.contoso.test); mail ptrelay signs for contoso.test (d=contoso.test) aligns with its From: (adkim relaxed)", ""},
		{"strict", "contoso.test", newDNS().with("_dmarc.contoso.test", "v=DMARC1; p=quarantine; adkim=s"), "ok", "(adkim strict)", ""},
		{"none published", "contoso.test", newDNS(), "warn", "no DMARC record at _dmarc.contoso.test",
			`publish _dmarc.contoso.test TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@contoso.test"`},
		{"other TXT only", "contoso.test", newDNS().with("_dmarc.contoso.test", "some-verification=1"), "warn", "no DMARC record", ""},
		{"two records", "contoso.test", newDNS().with("_dmarc.contoso.test", "v=DMARC1; p=none", "v=DMARC1; p=reject"),
			"fail", "2 DMARC records at _dmarc.contoso.test", "delete all but one"},
		{"bad policy", "contoso.test", newDNS().with("_dmarc.contoso.test", "v=DMARC1; p=block"), "fail", "has no valid p=", ""},
		{"not signed", "example.org", newDNS().with("_dmarc.example.org", "v=DMARC1; p=reject"), "warn",
			"mail from example.org is not signed by ptrelay", "enable DKIM for example.org"},
		{"organizational domain's record", "sales.example.org", newDNS().with("_dmarc.example.org", "v=DMARC1; p=none; sp=quarantine"),
			"warn", "p=quarantine (_dmarc.example.org)", "enable DKIM for sales.example.org"},
		{"temporary", "contoso.test", stubDNS{txt: map[string][]string{}, temp: map[string]bool{"_dmarc.contoso.test": true}},
			"unknown", "did not finish", "run the check again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.CheckDMARC(context.Background(), tc.dns, tc.domain)
			if c.Level() != tc.level || !strings.Contains(c.Detail, tc.detail) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("%+v (%s)\nwant %s, detail %q, fix %q", c, c.Level(), tc.level, tc.detail, tc.fix)
			}
		})
	}
}

// The record of a key, cut into strings a TXT record can hold, joins back to what verifiers parse.
func TestRecordOf(t *testing.T) {
	for _, k := range []*Key{key("contoso.test", "ptr2026a", rsaKeyOnce()), key("contoso.test", "ptr2026e", edKeyOnce())} {
		rec, err := k.Record()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rec.Strings, "") != rec.Value {
			t.Errorf("strings %q do not join to %q", rec.Strings, rec.Value)
		}
		for _, s := range rec.Strings {
			if len(s) > 255 || strings.ContainsAny(s, "\"\\") {
				t.Errorf("string of %d bytes: %q", len(s), s)
			}
		}
		if !strings.HasPrefix(rec.Value, "v=DKIM1; k="+k.Algorithm()+"; p=") {
			t.Errorf("value %q", rec.Value)
		}
		zl := rec.ZoneLines()
		if !strings.HasPrefix(zl, k.Name()+". IN TXT ( \"v=DKIM1; k=") || !strings.HasSuffix(zl, "\" )") {
			t.Errorf("zone lines %q", zl)
		}
		if rec.Algorithm == "rsa" && (rec.Bits != 2048 || len(rec.Strings) != 3) {
			t.Errorf("RSA-2048 record: %d bits, %d strings", rec.Bits, len(rec.Strings))
		}
	}
}

func TestWriteKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.pem")
	k, err := Generate("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, err %v", st.Mode(), err)
	}
	back, err := config.ReadDKIMKey(p)
	if err != nil {
		t.Fatalf("the written key does not read back: %v", err)
	}
	if !back.Public().(interface{ Equal(x crypto.PublicKey) bool }).Equal(k.Public()) {
		t.Error("another key read back")
	}
	raw, _ := os.ReadFile(p)
	if b, _ := pem.Decode(raw); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("not PKCS#8 PEM: %s", raw)
	} else if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Error(err)
	}
	if err := WriteKeyFile(p, k); err == nil || !strings.Contains(err.Error(), "exists: ptrelay never overwrites a key") {
		t.Errorf("second write: %v", err)
	}
	for _, bad := range []struct {
		algo string
		bits int
		want string
	}{{"rsa", 1024, "at least 2048 bits"}, {"rsa", 8192, "more than 4096"}, {"dsa", 0, "write rsa"}} {
		if _, err := Generate(bad.algo, bad.bits); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Generate(%s, %d): %v", bad.algo, bad.bits, err)
		}
	}
}
