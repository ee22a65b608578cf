package dkim

import (
	"slices"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// Signed mail verifies against the published record, for RSA-2048 and Ed25519 alike, and two keys of one
// domain give two signatures that each verify.
func TestSign_VerifiesRSAAndEd25519(t *testing.T) {
	rsaKey := key("contoso.test", "ptr2026a", rsaKeyOnce())
	edKey := key("contoso.test", "ptr2026e", edKeyOnce())
	for _, tc := range []struct {
		name string
		keys []*Key
		algs []string
	}{
		{"rsa", []*Key{rsaKey}, []string{"a=rsa-sha256"}},
		{"ed25519", []*Key{edKey}, []string{"a=ed25519-sha256"}},
		{"both", []*Key{rsaKey, edKey}, []string{"a=rsa-sha256", "a=ed25519-sha256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := signerWith(tc.keys...)
			signed, d := sign(t, s, baseMsg, SignOptions{})
			if !d.Signed() || d.Domain != "contoso.test" || len(d.Keys) != len(tc.keys) {
				t.Fatalf("decision %+v", d)
			}
			errs := verify(t, signed, publish(t, tc.keys...))
			if len(errs) != len(tc.keys) {
				t.Fatalf("%d signatures, want %d", len(errs), len(tc.keys))
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("signature %d: %v\n%s", i, err, signed)
				}
			}
			head := signed[:strings.Index(signed, "\r\nReceived:")]
			for _, want := range append(tc.algs, "c=relaxed/relaxed", "d=contoso.test") {
				if !strings.Contains(strings.ReplaceAll(head, "\r\n ", ""), want) {
					t.Errorf("signature lacks %s:\n%s", want, head)
				}
			}
			if strings.Contains(head, " l=") {
				t.Errorf("signature has a body length (l=):\n%s", head)
			}
		})
	}
}

// What a receiver sees when the published record is not the key's: another key, a revoked record, two records.
func TestSign_PublishedRecordProblems(t *testing.T) {
	k := key("contoso.test", "ptr2026a", rsaKeyOnce())
	other := key("contoso.test", "ptr2026a", otherRSAOnce())
	good := publish(t, k)[k.Name()][0]
	signed, _ := sign(t, signerWith(k), baseMsg, SignOptions{})
	for _, tc := range []struct {
		name    string
		records []string
		want    string
		perm    bool
	}{
		{"mismatched key", publish(t, other)[other.Name()], "signature did not verify", false},
		{"revoked key", []string{"v=DKIM1; k=rsa; p="}, "key revoked", true},
		{"two records", []string{good, good}, "multiple TXT records found for key", true},
		{"ed25519 record for an RSA key", publish(t, key("contoso.test", "ptr2026a", edKeyOnce()))[k.Name()], "inappropriate key algorithm", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := verify(t, signed, zone{k.Name(): tc.records})
			if len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("verification %v, want %q", errs, tc.want)
			}
			if msgauth.IsPermFail(errs[0]) != tc.perm {
				t.Errorf("permfail %v, want %v", msgauth.IsPermFail(errs[0]), tc.perm)
			}
		})
	}
	if errs := verify(t, signed, zone{k.Name(): {good}}); errs[0] != nil {
		t.Fatalf("the right record does not verify: %v", errs[0])
	}
}

// Oversigning: a From: added after signing (above the signed one, where a receiver shows it) breaks the
// signature. Without oversigning it would not: the verifier takes the bottom From:, the one that was signed.
func TestSign_AddedFromBreaksOversignedSignature(t *testing.T) {
	k := key("contoso.test", "ptr2026a", edKeyOnce())
	z := publish(t, k)
	addFrom := func(signed string) string {
		i := strings.Index(signed, "Received:")
		return signed[:i] + "From: CEO <ceo@contoso.test>\r\n" + signed[i:]
	}
	s := signerWith(k)
	signed, _ := sign(t, s, baseMsg, SignOptions{})
	if errs := verify(t, signed, z); errs[0] != nil {
		t.Fatalf("before the change: %v", errs[0])
	}
	if errs := verify(t, addFrom(signed), z); errs[0] == nil {
		t.Fatal("a second From: added after signing still verifies")
	}
	s.oversign = nil
	plain, _ := sign(t, s, baseMsg, SignOptions{})
	if errs := verify(t, addFrom(plain), z); errs[0] != nil {
		t.Fatalf("without oversigning the added From: should pass unnoticed (the reason oversigning exists): %v", errs[0])
	}
}

// A smart host that rewrites Message-ID (Amazon SES) breaks a signature that covers it, not one made with safe
// headers, which leave Message-ID and Date out of h=.
func TestSign_MessageIDRewriteAndSafeHeaders(t *testing.T) {
	k := key("contoso.test", "ptr2026a", rsaKeyOnce())
	z := publish(t, k)
	rewrite := func(signed string) string {
		return strings.Replace(signed, "Message-ID: <abc.123@contoso.test>", "Message-ID: <0100018c-ses@email.amazonses.com>", 1)
	}
	s := signerWith(k)
	covered, _ := sign(t, s, baseMsg, SignOptions{})
	if errs := verify(t, rewrite(covered), z); errs[0] == nil {
		t.Fatal("a signature covering Message-ID survived its rewrite")
	}
	safe, _ := sign(t, s, baseMsg, SignOptions{SafeHeaders: true})
	if errs := verify(t, rewrite(safe), z); errs[0] != nil {
		t.Fatalf("a safe-headers signature broke on the Message-ID rewrite: %v", errs[0])
	}
	vs, err := msgauth.VerifyWithOptions(strings.NewReader(safe), &msgauth.VerifyOptions{LookupTXT: z.lookup})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range vs[0].HeaderKeys {
		if strings.EqualFold(h, "Message-ID") || strings.EqualFold(h, "Date") {
			t.Errorf("safe headers signed %s: h=%v", h, vs[0].HeaderKeys)
		}
	}
}

// Which messages are signed, with which key, and why the others are not.
func TestSign_Decisions(t *testing.T) {
	contoso := key("contoso.test", "ptr2026a", edKeyOnce())
	fabrikam := key("fabrikam.test", "s1", edKeyOnce())
	s := signerWith(contoso, fabrikam)
	for _, tc := range []struct {
		name   string
		header string
		domain string
		keys   []*Key
		reason Reason
		own    bool
	}{
		{"key of the From domain", "From: alice@contoso.test\r\n", "contoso.test", []*Key{contoso}, "", false},
		{"case and display name", "From: =?utf-8?q?Ren=C3=A9?= <Rene@Fabrikam.TEST>\r\n", "fabrikam.test", []*Key{fabrikam}, "", false},
		{"folded From", "From: \"Alice Example\"\r\n <alice@contoso.test>\r\n", "contoso.test", []*Key{contoso}, "", false},
		{"two addresses of one domain", "From: a@contoso.test, b@contoso.test\r\n", "contoso.test", []*Key{contoso}, "", false},
		{"group syntax", "From: Sales: a@contoso.test, b@contoso.test;\r\n", "contoso.test", []*Key{contoso}, "", false},
		{"lenient: unquoted dot in the name", "From: J. Smith <j@contoso.test>\r\n", "contoso.test", []*Key{contoso}, "", false},
		{"subdomain has no key", "From: a@sales.contoso.test\r\n", "sales.contoso.test", nil, ReasonNoKey, false},
		{"no key", "From: a@example.org\r\n", "example.org", nil, ReasonNoKey, false},
		{"no From", "Subject: x\r\n", "", nil, ReasonNoFrom, false},
		{"empty From", "From: \r\n", "", nil, ReasonBadFrom, false},
		{"two domains", "From: a@contoso.test, b@fabrikam.test\r\n", "", nil, ReasonFromDomains, false},
		{"two From fields of two domains", "From: a@contoso.test\r\nFrom: b@fabrikam.test\r\n", "", nil, ReasonFromDomains, false},
		{"unreadable", "From: nobody\r\n", "", nil, ReasonBadFrom, false},
		{"a DSN of ptrelay", "From: Mail Delivery System <MAILER-DAEMON@relay.contoso.test>\r\n", "relay.contoso.test", []*Key{contoso}, "", true},
		{"alert mail of ptrelay", "From: \"ptrelay on relay.contoso.test\" <ptrelay@relay.contoso.test>\r\n", "relay.contoso.test", []*Key{contoso}, "", true},
		{"another host of the domain", "From: a@host.contoso.test\r\n", "host.contoso.test", nil, ReasonNoKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.header + "Subject: s\r\n\r\nbody\r\n"
			for _, d := range []Decision{s.Plan([]byte(msg)), signOnly(t, s, msg)} {
				if d.Domain != tc.domain || !slices.Equal(d.Keys, tc.keys) || d.Reason != tc.reason || d.Own != tc.own {
					t.Errorf("decision %+v (%s), want domain %q keys %v reason %q own %v", d, d, tc.domain, tc.keys, tc.reason, tc.own)
				}
			}
		})
	}
}

func signOnly(t *testing.T, s *Signer, msg string) Decision {
	t.Helper()
	fields, d, err := s.Sign(strings.NewReader(msg), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Signed() != (len(fields) > 0) {
		t.Errorf("decision %v with %d bytes of fields", d, len(fields))
	}
	return d
}

// A message that is all header (no empty line, no body) is signed as one with an empty body.
func TestSign_HeaderOnlyMessage(t *testing.T) {
	k := key("contoso.test", "ptr2026a", edKeyOnce())
	msg := "From: alice@contoso.test\r\nSubject: only a header\r\n"
	fields, d, err := signerWith(k).Sign(strings.NewReader(msg), SignOptions{})
	if err != nil || !d.Signed() {
		t.Fatalf("%v %v", d, err)
	}
	// go-msgauth's verifier needs the empty line too; a body of one CRLF canonicalizes as an empty one.
	if errs := verify(t, string(fields)+msg+"\r\n", publish(t, k)); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

func TestHeaderKeys(t *testing.T) {
	counts := map[string]int{"from": 1, "to": 2, "subject": 1, "message-id": 1, "date": 1, "received": 3, "x-mailer": 1}
	over := []string{"From", "To", "Subject", "Date", "Reply-To", "X-Mailer"}
	got := headerKeys(counts, over, false)
	want := []string{"From", "From", "Reply-To", "Subject", "Subject", "Date", "Date", "To", "To", "To", "Message-ID", "X-Mailer", "X-Mailer"}
	if !slices.Equal(got, want) {
		t.Errorf("h=%v\nwant %v", got, want)
	}
	safe := headerKeys(counts, over, true)
	want = []string{"From", "From", "Reply-To", "Subject", "Subject", "To", "To", "To", "X-Mailer", "X-Mailer"}
	if !slices.Equal(safe, want) {
		t.Errorf("safe h=%v\nwant %v", safe, want)
	}
}

// A nil signer (no [dkim] keys) signs nothing.
func TestSign_NilSigner(t *testing.T) {
	var s *Signer
	fields, d, err := s.Sign(strings.NewReader(baseMsg), SignOptions{})
	if fields != nil || d.Signed() || err != nil {
		t.Fatalf("%q %v %v", fields, d, err)
	}
}
