package packaging_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/relay/relaytest"
)

// buildDeb runs scripts/build-deb into a temporary directory and returns the package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	relaytest.Require(t, "go", "dpkg-deb")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/build-deb", "-o", out, "-v", "1.2.3~test")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/build-deb: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Dir(deb) != out || !strings.HasPrefix(filepath.Base(deb), "ptrelay_1.2.3~test_") {
		t.Fatalf("scripts/build-deb printed %q", b)
	}
	return deb
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command(relaytest.Path(t, "dpkg-deb"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, b)
	}
	return string(b)
}

// TestDeb builds the package as CI does and checks what an admin gets from `apt install ./ptrelay_*.deb`: the
// binary, the unit with the packaged paths, the documentation, the example configuration as a conffile that the
// packaged binary accepts, maintainer scripts that reload systemd and never start ptrelay, and no lintian error.
func TestDeb(t *testing.T) {
	deb := buildDeb(t)

	for field, want := range map[string]string{"Package": "ptrelay", "Version": "1.2.3~test", "Section": "mail"} {
		if got := strings.TrimSpace(dpkgDeb(t, "-f", deb, field)); got != want {
			t.Errorf("control %s = %q, want %q", field, got, want)
		}
	}

	// Contents: path -> mode, all owned by root.
	listing := dpkgDeb(t, "-c", deb)
	for path, mode := range map[string]string{
		"./usr/bin/ptrelay":                        "-rwxr-xr-x",
		"./lib/systemd/system/ptrelay.service":     "-rw-r--r--",
		"./etc/ptrelay/ptrelay.toml":               "-rw-r--r--",
		"./usr/share/doc/ptrelay/copyright":        "-rw-r--r--",
		"./usr/share/doc/ptrelay/changelog.gz":     "-rw-r--r--",
		"./usr/share/doc/ptrelay/install.md":       "-rw-r--r--",
		"./usr/share/doc/ptrelay/configuration.md": "-rw-r--r--",
		"./usr/share/doc/ptrelay/index.md":         "-rw-r--r--",
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(mode) + ` root/root .* ` + regexp.QuoteMeta(path) + `$`)
		if !re.MatchString(listing) {
			t.Errorf("the package lacks %s %s root/root:\n%s", mode, path, listing)
		}
	}
	if strings.Contains(listing, "/usr/local") {
		t.Errorf("the package installs under /usr/local:\n%s", listing)
	}

	ctrl := t.TempDir()
	dpkgDeb(t, "-e", deb, ctrl)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(ctrl, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("conffiles"); got != "/etc/ptrelay/ptrelay.toml\n" {
		t.Errorf("conffiles = %q", got)
	}
	starts := regexp.MustCompile(`systemctl\s+(start|restart|reload-or-restart|enable)|--now|invoke-rc\.d`)
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		s := read(script)
		if fi, err := os.Stat(filepath.Join(ctrl, script)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v", script, err, fi.Mode())
		}
		if m := starts.FindString(code(s)); m != "" {
			t.Errorf("%s starts or enables the service (%q):\n%s", script, m, s)
		}
	}
	if post := read("postinst"); !strings.Contains(post, "systemctl daemon-reload") || !strings.Contains(post, "try-restart") {
		t.Errorf("postinst does not reload systemd (or restart a running ptrelay on upgrade):\n%s", post)
	}

	root := t.TempDir()
	dpkgDeb(t, "-x", deb, root)
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/ptrelay.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/ptrelay serve -config /etc/ptrelay/ptrelay.toml") ||
		strings.Contains(string(unit), "/usr/local") {
		t.Errorf("the packaged unit does not run /usr/bin/ptrelay:\n%s", unit)
	}
	example := filepath.Join(root, "etc/ptrelay/ptrelay.toml")
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(data, example); err != nil {
		t.Errorf("the example configuration does not load: %v", err)
	}
	cmd := exec.Command(filepath.Join(root, "usr/bin/ptrelay"), "config", "check", "-config", example)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY=")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "/run/ptrelay/admin.sock") {
		t.Errorf("the packaged binary's config check of the example: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/bin/ptrelay"), "version").CombinedOutput(); err != nil ||
		strings.TrimSpace(string(out)) != "ptrelay 1.2.3~test" {
		t.Errorf("ptrelay version: %v %q", err, out)
	}

	// lintian: no error (warnings such as maintainer-script-calls-systemctl are accepted).
	relaytest.Require(t, "lintian")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, relaytest.Path(t, "lintian"), "--fail-on", "error", deb).CombinedOutput()
	if err != nil {
		t.Errorf("lintian reports errors: %v\n%s", err, out)
	}
	t.Logf("lintian:\n%s", out)
}

// code is a shell script without its comment lines.
func code(script string) string {
	var b strings.Builder
	for _, l := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
