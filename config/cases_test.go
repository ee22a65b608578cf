package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cleanEnv removes the systemd variables the configuration reads, so the outcome depends on the files only.
func cleanEnv(t testing.TB) {
	t.Helper()
	for _, v := range []string{"CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY", "PTRELAY_CONFIG"} {
		t.Setenv(v, "")
	}
}

// TestBadConfigs walks testdata/bad: every <case>.toml must fail, and every line of <case>.err must appear in the
// error text, so one case can require several problems to be reported together. A line starting with "!" must
// not appear (a consequence of an earlier problem that would only add noise).
func TestBadConfigs(t *testing.T) {
	cleanEnv(t)
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("only %d bad cases in testdata/bad", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".toml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".err")
			if err != nil {
				t.Fatalf("every bad case needs a .err file: %v", err)
			}
			c, err := Parse(data, name)
			if err == nil {
				t.Fatalf("Parse accepted %s", name)
			}
			if c != nil {
				t.Errorf("Parse returned a configuration together with an error")
			}
			got := err.Error()
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				line = strings.TrimSpace(line)
				switch {
				case line == "":
				case strings.HasPrefix(line, "!"):
					if strings.Contains(got, line[1:]) {
						t.Errorf("error contains %q\ngot:\n%s", line[1:], got)
					}
				case !strings.Contains(got, line):
					t.Errorf("error lacks %q\ngot:\n%s", line, got)
				}
			}
			for _, p := range Problems(err) {
				if p.File != name {
					t.Errorf("problem without its file name: %q", p.Error())
				}
			}
		})
	}
}

// TestGoodConfigs walks testdata/good: every file parses, validates, and prints to TOML that parses back to the
// same configuration.
func TestGoodConfigs(t *testing.T) {
	cleanEnv(t)
	files, err := filepath.Glob("testdata/good/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no good cases")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".toml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(data, name)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate after Parse: %v", err)
			}
			assertRoundTrip(t, c)
		})
	}
}
