package route

import (
	"testing"

	"ptrelay/config"
)

type fixedVerdict struct{ ok, known bool }

func (v fixedVerdict) DirectOK() (bool, bool) { return v.ok, v.known }

func TestDecide(t *testing.T) {
	withSH := func(mode config.RoutingMode, rules ...config.Rule) *config.Config {
		c := &config.Config{}
		c.Smarthosts = []config.Smarthost{config.NewSmarthost("isp", "smtp.isp.example:587")}
		c.Routing.Mode = mode
		c.Routing.Rules = rules
		return c
	}
	noSH := func(mode config.RoutingMode, rules ...config.Rule) *config.Config {
		c := withSH(mode, rules...)
		c.Smarthosts = nil
		return c
	}
	good := fixedVerdict{ok: true, known: true}
	bad := fixedVerdict{ok: false, known: true}
	unknown := fixedVerdict{}
	aol := config.Rule{Domains: []string{"AOL.com", "hotmail.com."}, Via: "smarthost"}
	ceo := config.Rule{Senders: []string{"ceo@corp.example"}, Via: "direct"}
	corp := config.Rule{Senders: []string{"@corp.example"}, Via: "smarthost"}
	plain := config.Rule{Senders: []string{"other.example"}, Via: "direct"}
	cases := []struct {
		name     string
		cfg      *config.Config
		from, to string
		verdict  VerdictSource
		want     Route
	}{
		{"default without smarthost is direct", noSH(""), "a@x.example", "b@y.example", nil, Direct},
		{"default with smarthost and no verdict is smarthost", withSH(""), "a@x.example", "b@y.example", nil, Smarthost},
		{"auto with good verdict is direct", withSH("auto"), "a@x.example", "b@y.example", good, Direct},
		{"auto with bad verdict is smarthost", withSH("auto"), "a@x.example", "b@y.example", bad, Smarthost},
		{"auto with unknown verdict is smarthost", withSH("auto"), "a@x.example", "b@y.example", unknown, Smarthost},
		{"auto without smarthost ignores a bad verdict", noSH("auto"), "a@x.example", "b@y.example", bad, Direct},
		{"mode direct", withSH("direct"), "a@x.example", "b@y.example", bad, Direct},
		{"mode smarthost", withSH("smarthost"), "a@x.example", "b@y.example", good, Smarthost},
		{"mode smarthost without smarthost falls back to direct", noSH("smarthost"), "a@x.example", "b@y.example", nil, Direct},
		{"rule by recipient domain, case-insensitive", withSH("direct", aol), "a@x.example", "b@aol.COM", nil, Smarthost},
		{"rule domain with trailing dot", withSH("direct", aol), "a@x.example", "b@hotmail.com", nil, Smarthost},
		{"rule does not match subdomain", withSH("direct", aol), "a@x.example", "b@mx.aol.com", nil, Direct},
		{"rule by sender address", withSH("smarthost", ceo), "CEO@corp.example", "b@y.example", nil, Direct},
		{"sender address rule does not match others of the domain", withSH("smarthost", ceo), "cfo@corp.example", "b@y.example", nil, Smarthost},
		{"rule by sender domain with @", withSH("direct", corp), "cfo@corp.example", "b@y.example", nil, Smarthost},
		{"rule by sender domain without @", withSH("smarthost", plain), "x@other.example", "b@y.example", nil, Direct},
		{"first match wins", withSH("auto", ceo, corp), "ceo@corp.example", "b@y.example", nil, Direct},
		{"first match wins, other order", withSH("auto", corp, ceo), "ceo@corp.example", "b@y.example", nil, Smarthost},
		{"null sender matches no sender rule", withSH("direct", corp), "", "b@y.example", nil, Direct},
		{"smarthost rule ignored without smarthost", noSH("direct", aol), "a@x.example", "b@aol.com", nil, Direct},
		{"unknown via ignored", withSH("direct", config.Rule{Domains: []string{"y.example"}, Via: "carrier-pigeon"}), "a@x.example", "b@y.example", nil, Direct},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(NewPolicy(c.cfg), c.from, c.to, c.verdict); got != c.want {
				t.Errorf("Decide(%q -> %q) = %s, want %s", c.from, c.to, got, c.want)
			}
		})
	}
}

func TestDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a@Example.COM":     "example.com",
		"a@b@example.com.":  "example.com",
		"":                  "",
		"postmaster":        "",
		"\"x@y\"@host.test": "host.test",
	} {
		if got := Domain(in); got != want {
			t.Errorf("Domain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPolicy_Reroute: routing.reroute applies only with a smart host and a mode that delivers directly.
func TestPolicy_Reroute(t *testing.T) {
	for _, c := range []struct {
		mode      config.RoutingMode
		smarthost bool
		reroute   bool
		want      bool
	}{
		{"", true, true, true},
		{"auto", true, true, true},
		{"direct", true, true, true},
		{"smarthost", true, true, false},
		{"auto", false, true, false},
		{"auto", true, false, false},
	} {
		cfg := &config.Config{Routing: config.Routing{Mode: c.mode, Reroute: c.reroute}}
		if c.smarthost {
			cfg.Smarthosts = []config.Smarthost{config.NewSmarthost("isp", "smtp.isp.example:587")}
		}
		if got := NewPolicy(cfg).Reroute; got != c.want {
			t.Errorf("mode %q, smart host %v, reroute %v: Reroute = %v, want %v", c.mode, c.smarthost, c.reroute, got, c.want)
		}
	}
}

// Pinned is Decide's first step alone: the route of the first matching rule, which reroutes must not override.
func TestPinned(t *testing.T) {
	c := &config.Config{}
	c.Smarthosts = []config.Smarthost{config.NewSmarthost("isp", "smtp.isp.example:587")}
	c.Routing.Rules = []config.Rule{
		{Domains: []string{"Partner.example."}, Via: "direct"},
		{Senders: []string{"ceo@corp.example"}, Via: "direct"},
		{Domains: []string{"aol.com"}, Via: "smarthost"},
	}
	for _, tc := range []struct {
		from, to string
		via      Route
		ok       bool
	}{
		{"a@corp.example", "b@partner.EXAMPLE", Direct, true},
		{"ceo@corp.example", "b@aol.com", Direct, true},
		{"a@corp.example", "b@aol.com", Smarthost, true},
		{"a@corp.example", "b@gmail.com", "", false},
		{"", "b@gmail.com", "", false},
	} {
		via, ok := NewPolicy(c).Pinned(tc.from, tc.to)
		if via != tc.via || ok != tc.ok {
			t.Errorf("Pinned(%q, %q) = %q %v, want %q %v", tc.from, tc.to, via, ok, tc.via, tc.ok)
		}
	}
}

// PinnedHost names the one smart host of via = "smarthost:NAME"; the list ("smarthost") and other routes name
// none, and a rule naming a host that is not configured is left out (validation refuses it).
func TestPinnedHost(t *testing.T) {
	c := &config.Config{}
	c.Smarthosts = []config.Smarthost{config.NewSmarthost("isp", "smtp.isp.example:587"), config.NewSmarthost("m365", "smtp.office365.com:587")}
	c.Routing.Rules = []config.Rule{
		{Domains: []string{"gone.example"}, Via: "smarthost:gone"},
		{Senders: []string{"scanner@corp.example"}, Via: "smarthost:m365"},
		{Domains: []string{"aol.com"}, Via: "smarthost"},
		{Domains: []string{"partner.example"}, Via: "direct"},
	}
	p := NewPolicy(c)
	for _, tc := range []struct{ from, to, host string }{
		{"scanner@corp.example", "b@aol.com", "m365"},
		{"a@corp.example", "b@aol.com", ""},
		{"a@corp.example", "b@partner.example", ""},
		{"a@corp.example", "b@gone.example", ""},
	} {
		if got := p.PinnedHost(tc.from, tc.to); got != tc.host {
			t.Errorf("PinnedHost(%q, %q) = %q, want %q", tc.from, tc.to, got, tc.host)
		}
	}
	if via, ok := p.Pinned("a@corp.example", "b@gone.example"); ok {
		t.Errorf("a rule naming an unknown host still pins %q", via)
	}
}
