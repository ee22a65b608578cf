package config

import (
	"bytes"
	"testing"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/; FuzzParse's holds every good and bad configuration of
// testdata plus documents aimed at the scanner (inline tables, dotted keys, arrays of tables).

func FuzzParseSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 || v > maxSize {
			t.Fatalf("ParseSize(%q) = %d: out of range", s, v)
		}
		back, err := ParseSize(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseSize(%q) = %d prints as %q, which reads back as %d, %v", s, v, v.String(), back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseDuration(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, v.D())
		}
		back, err := ParseDuration(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseDuration(%q) = %v prints as %q, which reads back as %v, %v", s, v.D(), v.String(), back.D(), err)
		}
	})
}

// FuzzParse feeds whole documents to the loader: it must never panic; a refused document must say why in a
// message that names the file; an accepted one must validate, and print to a document that reads back to the
// same configuration.
func FuzzParse(f *testing.F) {
	cleanEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatal("a configuration returned together with an error")
			}
			for _, p := range Problems(err) {
				if p.Msg == "" || p.File != "fuzz.toml" {
					t.Fatalf("problem without a message or a file: %+v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a configuration that Validate refuses: %v", err)
		}
		first, err := c.marshal(false)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(first, "printed.toml")
		if err != nil {
			t.Fatalf("the printed configuration does not parse: %v\n%s", err, first)
		}
		second, err := back.marshal(false)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("printing is not stable (%v):\n%s\n---\n%s", err, first, second)
		}
	})
}
