package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		name string
		text string
		want *Policy // nil: a syntax error
	}{
		{"LF", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n",
			&Policy{ModeEnforce, []string{"mx1.example.com", "*.example.net"}, 604800 * time.Second}},
		{"CRLF", "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmax_age: 86400\r\n",
			&Policy{ModeTesting, []string{"mx.example.com"}, 86400 * time.Second}},
		{"no final line end", "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400",
			&Policy{ModeEnforce, []string{"mx.example.com"}, 86400 * time.Second}},
		{"blank lines and spaces", "\nversion:STSv1\n\nmode:   enforce  \r\n\r\nmx:\tMX.Example.COM.\nmax_age: 60\n\n",
			&Policy{ModeEnforce, []string{"mx.example.com"}, 60 * time.Second}},
		{"mode none needs no mx", "version: STSv1\nmode: none\nmax_age: 86400\n", &Policy{ModeNone, nil, 86400 * time.Second}},
		{"duplicate mode: the first counts", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\n",
			&Policy{ModeTesting, []string{"a.example"}, time.Second}},
		{"duplicate max_age: the first counts", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: 9\n",
			&Policy{ModeEnforce, []string{"a.example"}, 5 * time.Second}},
		{"max_age capped at a year", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n",
			&Policy{ModeEnforce, []string{"a.example"}, MaxMaxAge}},
		{"unknown keys ignored", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nx-extension: anything at all\n",
			&Policy{ModeEnforce, []string{"a.example"}, 5 * time.Second}},
		{"bad version", "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 5\n", nil},
		{"bad mode", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 5\n", nil},
		{"negative max_age", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n", nil},
		{"max_age too long", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", nil},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 5\n", nil},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", nil},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 5\n", nil},
		{"line without colon", "version: STSv1\nmode enforce\nmx: a.example\nmax_age: 5\n", nil},
		{"U-label mx", "version: STSv1\nmode: enforce\nmx: mx.exämple.com\nmax_age: 5\n", nil},
		{"wildcard in the middle", "version: STSv1\nmode: enforce\nmx: mx.*.example.com\nmax_age: 5\n", nil},
		{"wildcard of a TLD", "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 5\n", nil},
		{"HTML page", "<html><body>Not found</body></html>\n", nil},
		{"empty", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePolicy(c.text)
			switch {
			case c.want == nil && err == nil:
				t.Errorf("parsed %+v; want a syntax error", got)
			case c.want == nil && !errors.Is(err, ErrPolicySyntax):
				t.Errorf("error %v does not wrap ErrPolicySyntax", err)
			case c.want != nil && err != nil:
				t.Errorf("error %v; want %+v", err, c.want)
			case c.want != nil && !reflect.DeepEqual(got, c.want):
				t.Errorf("got %+v; want %+v", got, c.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mx.example.com", "*.mail.example.net", "*.mx.microsoft"}}
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"mx.example.com", true},
		{"MX.Example.COM.", true},
		{"mx2.example.com", false},
		{"example.com", false},
		{"a.mail.example.net", true},
		{"mail.example.net", false},     // the wildcard needs a label
		{"a.b.mail.example.net", false}, // exactly one label (RFC 8461 4.1)
		{"icewolf-li.h-v1.mx.microsoft", false},
		{"contoso-com.mx.microsoft", true},
		{"amail.example.net", false},
		{".mail.example.net", false},
	} {
		if got := p.Matches(c.host); got != c.ok {
			t.Errorf("Matches(%q) = %v, want %v", c.host, got, c.ok)
		}
	}
}

func TestFindRecord(t *testing.T) {
	for _, c := range []struct {
		name string
		txts []string
		id   string // "" = no MTA-STS
	}{
		{"one", []string{"v=STSv1; id=20240101T000000;"}, "20240101T000000"},
		{"no spaces, no final semicolon", []string{"v=STSv1;id=abc123"}, "abc123"},
		{"others ignored", []string{"v=spf1 -all", "v=STSv1; id=x1;", "google-site-verification=abc"}, "x1"},
		{"extension", []string{"v=STSv1; id=x1; ext=yes"}, "x1"},
		{"first id counts", []string{"v=STSv1; id=x1; id=x2"}, "x1"},
		{"two records", []string{"v=STSv1; id=a;", "v=STSv1; id=b;"}, ""},
		{"none", []string{"v=spf1 -all"}, ""},
		{"no id", []string{"v=STSv1;"}, ""},
		{"bad id", []string{"v=STSv1; id=not-alnum;"}, ""},
		{"id too long", []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, ""},
		{"wrong version", []string{"v=STSv2; id=a;"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := FindRecord(c.txts)
			if c.id == "" {
				if !errors.Is(err, ErrNoRecord) {
					t.Errorf("FindRecord = %q, %v; want ErrNoRecord", id, err)
				}
				return
			}
			if err != nil || id != c.id {
				t.Errorf("FindRecord = %q, %v; want %q", id, err, c.id)
			}
		})
	}
}
