package dnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"ptrelay/internal/testkit"
)

// debianPackage names the package that ships each program the launchers run.
var debianPackage = map[string]string{"unbound": "unbound", "dnsmasq": "dnsmasq-base", "ldns-keygen": "ldnsutils",
	"ldns-signzone": "ldnsutils"}

// requireProgram returns the path of an external program the test needs. When it is missing the test is
// skipped with the reason, or fails under PTRELAY_E2E=1 (testkit.Missing, as relaytest.Require does): CI must
// not lose its end-to-end tests quietly.
func requireProgram(t testing.TB, prog string) string {
	t.Helper()
	if path, err := exec.LookPath(prog); err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, prog); isExecutable(p) {
			return p
		}
	}
	testkit.Missing(t, "end-to-end test needs "+prog+" (apt-get install "+debianPackage[prog]+")")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartUnbound starts a real unbound on 127.0.0.1 that serves records (zone-file lines, as for New) as
// local data and answers NXDOMAIN for everything else; it never queries the internet. It returns "127.0.0.1:port"
// once unbound answers, and stops it at the end of the test. Skips (or fails under PTRELAY_E2E=1) when unbound
// is not installed.
func StartUnbound(t testing.TB, records ...string) (addr string) {
	t.Helper()
	bin := requireProgram(t, "unbound")
	rrs := parse(t, records)
	if len(rrs) == 0 {
		t.Fatal("dnstest: StartUnbound needs at least one record")
	}
	dir := t.TempDir()
	return launchUnbound(t, bin, dir, "unbound", rrs[0], func(port int) string {
		return unboundConfig(dir, port, rrs)
	})
}

// launchUnbound starts unbound with the configuration config(port) writes for a free port, and returns
// "127.0.0.1:port" once unbound answers probe. A port someone else took meanwhile is retried with another, up to
// five times.
func launchUnbound(t testing.TB, bin, dir, kind string, probe dns.RR, config func(port int) string) string {
	t.Helper()
	var lastErr error
	for attempt := range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("dnstest: free port: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		conf := filepath.Join(dir, fmt.Sprintf("%s-%d.conf", strings.ReplaceAll(kind, " ", "-"), attempt))
		if err := os.WriteFile(conf, []byte(config(port)), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = runUnbound(t, bin, conf, addr, probe); lastErr == nil {
			return addr
		}
		t.Logf("dnstest: %s on %s: %v; retrying on another port", kind, addr, lastErr)
	}
	t.Fatalf("dnstest: %s did not start: %v", kind, lastErr)
	return ""
}

// freePort finds a port that is free for both UDP and TCP on 127.0.0.1. Someone may take it before unbound
// binds it; StartUnbound then retries with another one.
func freePort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for both UDP and TCP")
}

// runUnbound checks conf with unbound-checkconf when it is installed, then starts unbound on it (runServer).
func runUnbound(t testing.TB, bin, conf, addr string, probe dns.RR) error {
	t.Helper()
	if check := bin + "-checkconf"; isExecutable(check) {
		if out, err := exec.Command(check, conf).CombinedOutput(); err != nil {
			return fmt.Errorf("unbound-checkconf: %v: %s", err, out)
		}
	}
	return runServer(t, "unbound", addr, probe, bin, "-d", "-c", conf)
}

// runServer starts a DNS server in the foreground and waits until it answers probe's name and type at addr
// with NOERROR; it is killed when the test ends, and its log shown when the test failed. On failure to start
// the process is gone and the error holds its log.
func runServer(t testing.TB, name, addr string, probe dns.RR, bin string, args ...string) error {
	t.Helper()
	logs := &testkit.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logs
	cmd.Stderr = logs
	// A test binary that dies (a panic, a timeout) takes the server with it instead of leaving it on its port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion(probe.Header().Name, probe.Header().Rrtype)
	var died error // set when the process exits before it answered
	answered := testkit.Eventually(10*time.Second, func() bool {
		select {
		case err := <-exited:
			exited <- err // for stop
			died = fmt.Errorf("exited (%v)", err)
			return true
		default:
		}
		r, _, err := c.Exchange(q, addr)
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	switch {
	case died != nil:
		stop()
		return fmt.Errorf("%v: %s", died, logs.String())
	case !answered:
		stop()
		return fmt.Errorf("no answer within 10s: %s", logs.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("dnstest: %s log:\n%s", name, logs.String())
		}
	})
	return nil
}

// unboundConfig serves rrs as local data. Every owner name and its parent become static local zones, so names
// near the data answer NXDOMAIN/NODATA as an authority would (and unbound's default zones such as the reverse of
// ::1 are overridden); "." static catches the rest, so nothing reaches
// the iterator and the internet.
func unboundConfig(dir string, port int, rrs []dns.RR) string {
	zones := map[string]bool{".": true}
	var data []string
	for _, rr := range rrs {
		name := strings.ToLower(rr.Header().Name)
		zones[name] = true
		if labels := dns.SplitDomainName(name); len(labels) > 1 {
			zones[dns.Fqdn(strings.Join(labels[1:], "."))] = true
		}
		line := strings.ReplaceAll(rr.String(), "\t", " ")
		data = append(data, "  local-data: '"+strings.ReplaceAll(line, "'", "")+"'")
	}
	names := make([]string, 0, len(zones))
	for z := range zones {
		names = append(names, z)
	}
	slices.Sort(names)

	var b strings.Builder
	b.WriteString(unboundServer(dir, port))
	b.WriteString(`  module-config: "iterator"
  num-threads: 1
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
`)
	for _, z := range names {
		fmt.Fprintf(&b, "  local-zone: %q static\n", z)
	}
	b.WriteString(strings.Join(data, "\n"))
	b.WriteString("\nremote-control:\n  control-enable: no\n")
	return b.String()
}

// unboundServer is the start of the server clause every test unbound shares: in the foreground, logging to
// stderr, as the current user, on 127.0.0.1 at port (UDP and TCP), answering loopback clients, files in dir.
func unboundServer(dir string, port int) string {
	return fmt.Sprintf(`server:
  username: ""
  chroot: ""
  directory: %q
  pidfile: ""
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  interface: 127.0.0.1@%d
  port: %d
  so-reuseport: no
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  access-control: 127.0.0.0/8 allow
`, dir, port, port)
}
