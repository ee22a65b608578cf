package inbound

import (
	"strings"
	"testing"
)

func TestCheckMailbox(t *testing.T) {
	ok := []struct{ in, out string }{
		{"a@example.org", "a@example.org"},
		{"first.last+tag@sub.example.org", "first.last+tag@sub.example.org"},
		{"a%b@c.example", "a%b@c.example"},
		{"a!b@c.example", "a!b@c.example"},
		{"a@b@c.example", `"a@b"@c.example`}, // go-smtp unquoted "a@b"@c.example
		{`a"b@c.example`, `"a\"b"@c.example`},
		{`a\b@c.example`, `"a\\b"@c.example`},
		{"a b@c.example", `"a b"@c.example`},
		{".a@c.example", `".a"@c.example`},
		{"a@[192.0.2.1]", "a@[192.0.2.1]"},
		{"a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"},
		{"a@host_name.corp", "a@host_name.corp"},
		{"a@xn--bcher-kva.example", "a@xn--bcher-kva.example"},
	}
	for _, c := range ok {
		got, err := checkMailbox(c.in, false)
		if err != nil || got != c.out {
			t.Errorf("checkMailbox(%q) = %q, %v; want %q", c.in, got, err, c.out)
		}
	}
	bad := []string{"a", "@example.org", "a@", "a@.example", "a@example..org", "a@-x.example", "a@x-.example",
		"a@[1.2.3]", "a@[IPv6:1.2.3.4]", "a@[IPv6:::ffff:1.2.3.4]", "a@[::1]", "a\x00b@example.org", "a\rb@example.org",
		"a@exa$mple.org", strings.Repeat("a", 65) + "@example.org", "a@" + strings.Repeat("b.", 127) + "org",
		"j\xc3\xb6rg@example.org", "a@b\xc3\xbccher.example"}
	for _, in := range bad {
		if got, err := checkMailbox(in, false); err == nil {
			t.Errorf("checkMailbox(%q) = %q, want an error", in, got)
		}
	}
	if got, err := checkMailbox("j\xc3\xb6rg@b\xc3\xbccher.example", true); err != nil || got != "j\xc3\xb6rg@b\xc3\xbccher.example" {
		t.Errorf("SMTPUTF8 address: %q, %v", got, err)
	}
	if _, err := checkMailbox("a\xff@example.org", true); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
}

// FuzzCheckMailbox: whatever a client sends, an accepted address is one line of text whose domain is the part
// after the last @, and whose local part is a dot-string or a properly quoted string.
func FuzzCheckMailbox(f *testing.F) {
	for _, s := range []string{"a@example.org", `a"b@c.example`, "a@[IPv6:::1]", "a@b@c", "\x00@x", "a@[1.2.3.4]"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in string, utf8OK bool) {
		out, err := checkMailbox(in, utf8OK)
		if err != nil {
			return
		}
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("%q -> %q holds a control character", in, out)
		}
		at := strings.LastIndexByte(out, '@')
		local, domain := out[:at], out[at+1:]
		if domain != in[strings.LastIndexByte(in, '@')+1:] {
			t.Fatalf("%q -> %q changed the domain", in, out)
		}
		if !isDotString(local) {
			if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' {
				t.Fatalf("%q -> %q: local part neither dot-string nor quoted", in, out)
			}
			body := local[1 : len(local)-1]
			for i := 0; i < len(body); i++ {
				if body[i] == '\\' {
					i++
					continue
				}
				if body[i] == '"' {
					t.Fatalf("%q -> %q: unescaped quote", in, out)
				}
			}
		}
	})
}
