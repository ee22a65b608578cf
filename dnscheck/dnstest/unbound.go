package dnstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// requireProgram returns the path of an external program the test needs. When it is missing the test is
// skipped with the reason, unless PTRELAY_E2E=1, where it fails: CI must not lose its end-to-end tests quietly.
// (Same behaviour as relaytest.Require; kept here because dnstest must not import relay/...)
func requireProgram(t testing.TB, prog string) string {
	t.Helper()
	path, err := exec.LookPath(prog)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			if p := filepath.Join(dir, prog); isExecutable(p) {
				return p
			}
		}
		msg := fmt.Sprintf("%s not installed (Debian package %q): %v", prog, prog, err)
		if os.Getenv("PTRELAY_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
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
	var lastErr error
	for attempt := range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("dnstest: free port: %v", err)
		}
		addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		conf := filepath.Join(dir, fmt.Sprintf("unbound-%d.conf", attempt))
		if err := os.WriteFile(conf, []byte(unboundConfig(dir, port, rrs)), 0o600); err != nil {
			t.Fatal(err)
		}
		lastErr = runUnbound(t, bin, conf, addr, rrs[0])
		if lastErr == nil {
			return addr
		}
		t.Logf("dnstest: unbound on %s: %v; retrying on another port", addr, lastErr)
	}
	t.Fatalf("dnstest: unbound did not start: %v", lastErr)
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

// syncBuffer collects unbound's log from its stderr goroutine for the test's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runUnbound starts unbound and waits until it answers probe; on failure the process is gone.
func runUnbound(t testing.TB, bin, conf, addr string, probe dns.RR) error {
	t.Helper()
	if check := bin + "-checkconf"; isExecutable(check) {
		if out, err := exec.Command(check, conf).CombinedOutput(); err != nil {
			return fmt.Errorf("unbound-checkconf: %v: %s", err, out)
		}
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-d", "-c", conf)
	cmd.Stdout = logs
	cmd.Stderr = logs
	// A test binary that dies (a panic, a timeout) takes unbound with it instead of leaving it on its port.
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v): %s", err, logs.String())
		default:
		}
		if r, _, err := c.Exchange(q, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("dnstest: unbound log:\n%s", logs.String())
				}
			})
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return fmt.Errorf("no answer within 10s: %s", logs.String())
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
	fmt.Fprintf(&b, `server:
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
  module-config: "iterator"
  num-threads: 1
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
`, dir, port, port)
	for _, z := range names {
		fmt.Fprintf(&b, "  local-zone: %q static\n", z)
	}
	b.WriteString(strings.Join(data, "\n"))
	b.WriteString("\nremote-control:\n  control-enable: no\n")
	return b.String()
}
