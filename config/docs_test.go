package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCoverEveryKey keeps docs/configuration.md and the schema together: every key of Config (tables, arrays
// of tables and their keys included) must be documented under a "### `key`" heading, and every such heading must
// name a key that exists.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatalf("the configuration reference is missing: %v", err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^### `([^`]+)`").FindAllStringSubmatch(string(doc), -1) {
		headings[m[1]] = true
	}
	keys := map[string]bool{}
	for _, k := range schema() {
		keys[k.Key] = true
		if !headings[k.Key] {
			t.Errorf("docs/configuration.md has no \"### `%s`\" section", k.Key)
		}
	}
	if len(keys) < 50 {
		t.Fatalf("the schema walk found only %d keys", len(keys))
	}
	for h := range headings {
		if !keys[h] {
			t.Errorf("docs/configuration.md documents %q, which is not a key of config.Config", h)
		}
	}
}

// TestDocsShowDefaults checks the documented default of every scalar key against the embedded defaults, for the
// keys whose default is a fixed value, so that changing default.toml without the docs fails.
func TestDocsShowDefaults(t *testing.T) {
	cleanEnv(t)
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	if err := Default().WriteRedacted(&printed); err != nil {
		t.Fatal(err)
	}
	// "key = 'value'" lines of the printed defaults, per section.
	section := ""
	for _, line := range strings.Split(printed.String(), "\n") {
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok || section == "" {
			continue
		}
		key := section + "." + k
		switch key {
		case "routing.mode", "admin.socket":
			continue // computed defaults, described in words
		}
		v = strings.ReplaceAll(v, "'", `"`)
		i := strings.Index(string(doc), "### `"+key+"`")
		if i < 0 {
			continue // reported by TestDocsCoverEveryKey
		}
		entry := string(doc[i:])
		if j := strings.Index(entry[4:], "\n### "); j >= 0 {
			entry = entry[:j+4]
		}
		if !strings.Contains(entry, "default: `"+v+"`") {
			t.Errorf("docs: %s should say default: `%s`", key, v)
		}
	}
}
