package message

import (
	"net/netip"
	"strings"
	"testing"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestReceivedValue(t *testing.T) {
	base := ReceivedParams{Helo: "pc1.corp", RDNS: "pc1.corp.example", IP: mustAddr("192.0.2.7"),
		Hostname: "relay.example.net", ID: "s42", Now: testNow}
	with := func(f func(*ReceivedParams)) ReceivedParams { p := base; f(&p); return p }
	cases := []struct {
		name string
		p    ReceivedParams
		want string
	}{
		{"plain ESMTP", base,
			"from pc1.corp (pc1.corp.example [192.0.2.7]) by relay.example.net (ptrelay) with ESMTP id s42; " + testDate},
		{"TLS", with(func(p *ReceivedParams) { p.TLS = true }), "with ESMTPS id"},
		{"AUTH", with(func(p *ReceivedParams) { p.Auth = true }), "with ESMTPA id"},
		{"TLS and AUTH", with(func(p *ReceivedParams) { p.TLS, p.Auth = true, true }), "with ESMTPSA id"},
		{"HELO", with(func(p *ReceivedParams) { p.HeloOnly = true }), "with SMTP id"},
		{"no rDNS", with(func(p *ReceivedParams) { p.RDNS = "" }), "(unknown [192.0.2.7])"},
		{"IPv6 literal", with(func(p *ReceivedParams) { p.IP = mustAddr("2001:db8::1") }), "[IPv6:2001:db8::1])"},
		{"IPv4-mapped IPv6 shown as IPv4", with(func(p *ReceivedParams) { p.IP = mustAddr("::ffff:192.0.2.7") }), "[192.0.2.7])"},
		{"one recipient named", with(func(p *ReceivedParams) { p.Recipients = []string{"bob@example.org"} }),
			"id s42 for <bob@example.org>; " + testDate},
		{"hostile HELO made safe", with(func(p *ReceivedParams) { p.Helo = "x) by evil (;\x01é" }), "from x?"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ReceivedValue(tc.p)
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got  %q\nwant it to contain %q", got, tc.want)
			}
		})
	}
}

func TestReceivedValue_ForOnlyWithOneRecipient(t *testing.T) {
	for _, rcpts := range [][]string{nil, {"a@x", "b@x"}, {"jérôme@example.org"}, {"a b@x"}} {
		v := ReceivedValue(ReceivedParams{Helo: "h", Hostname: "r", Recipients: rcpts, Now: testNow})
		if strings.Contains(v, " for ") {
			t.Errorf("recipients %q: %q names a recipient", rcpts, v)
		}
	}
}

func TestReceivedValue_HostileHELOStaysOneClause(t *testing.T) {
	v := ReceivedValue(ReceivedParams{Helo: "a) (b; c\\", Hostname: "r", Now: testNow})
	// One pair for the client's comment, one for "(ptrelay)", one ';' before the date.
	if strings.Count(v, "(") != 2 || strings.Count(v, ")") != 2 || strings.Count(v, ";") != 1 {
		t.Fatalf("%q: the client's HELO added comment or clause delimiters", v)
	}
}
