package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestGuideBlocksParse: every TOML block of the smart-host guides (and the configuration page's smart-host
// examples) is a configuration ptrelay accepts, so that an admin who copies one gets no error. Files the blocks
// name that must exist (certificates, a service account key) are replaced by test files.
func TestGuideBlocksParse(t *testing.T) {
	cleanEnv(t)
	block := regexp.MustCompile("(?s)```toml\n(.*?)```")
	files := map[*regexp.Regexp]string{
		regexp.MustCompile(`"/etc/ptrelay/[^"]+\.pem"`):  `"testdata/files/cert.pem"`,
		regexp.MustCompile(`"/etc/ptrelay/[^"]+\.key"`):  `"testdata/files/key.pem"`,
		regexp.MustCompile(`"/etc/ptrelay/[^"]+\.json"`): `"testdata/files/service-account.json"`,
	}
	checked := 0
	for _, doc := range []string{"../docs/microsoft365.md", "../docs/google-workspace.md", "../docs/configuration.md"} {
		md, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllStringSubmatch(string(md), -1) {
			text := m[1]
			if !strings.Contains(text, "[[smarthosts]]") {
				continue
			}
			for re, repl := range files {
				text = re.ReplaceAllString(text, repl)
			}
			if _, err := Parse([]byte(text), doc); err != nil {
				t.Errorf("a block of %s is refused:\n%s\n%v", doc, m[1], err)
			}
			checked++
		}
	}
	if checked < 6 {
		t.Errorf("only %d smart-host blocks found in the guides", checked)
	}
}

// TestPackagedExampleSmarthost: the packaged example's commented [[smarthosts]] block, uncommented as an admin
// would, is a valid configuration whose password comes from the unit's credential.
func TestPackagedExampleSmarthost(t *testing.T) {
	cleanEnv(t)
	data, err := os.ReadFile("../packaging/ptrelay.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	found := false
	for i := range lines {
		if lines[i] != "#[[smarthosts]]" {
			continue
		}
		found = true
		for j := i; j < len(lines) && strings.HasPrefix(lines[j], "#"); j++ {
			lines[j] = strings.TrimPrefix(lines[j], "#")
		}
	}
	if !found {
		t.Fatal("no #[[smarthosts]] block in the packaged example")
	}
	c, err := Parse([]byte(strings.Join(lines, "\n")), "ptrelay.toml")
	if err != nil {
		t.Fatalf("the example with its smart host uncommented: %v", err)
	}
	if h := c.Smarthosts[0]; h.PasswordCredential() != credentialName || h.PasswordFile != "" {
		t.Errorf("the example's smart host reads credential %q (file %q), not the unit's %q", h.PasswordCredential(), h.PasswordFile, credentialName)
	}
}
