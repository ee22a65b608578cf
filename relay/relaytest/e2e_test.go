package relaytest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// daemonConfig routes everything to sink as a smart host without TLS and keeps DNS and the egress checks on
// a dead loopback port, so that nothing leaves the machine.
func daemonConfig(listen, sink string) string {
	return fmt.Sprintf(`hostname = "relay.test"

[smtp]
listen = ["%s"]

[[smarthosts]]
name = "isp"
address = "%s"
tls = "none"

[routing]
mode = "smarthost"

[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"

[egress]
ip = "192.0.2.10"
whoami = ["127.0.0.1:9"]
dnsbl = []
port25_probe = "127.0.0.1:9"
`, listen, sink)
}

func TestDaemon_RelaysKillRestartStop(t *testing.T) {
	Require(t, "smtp-sink", "swaks", "go")
	sink := StartSink(t, SinkOptions{Addr: "127.0.0.3:0"})
	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t, "127.0.0.1"))
	d := StartDaemon(t, daemonConfig(listen, sink.Addr()))
	if d.Addr() != listen {
		t.Fatalf("Addr %q, want %q", d.Addr(), listen)
	}
	send := func(subject string) {
		t.Helper()
		out, err := Swaks(t, "--server", d.Addr(), "--from", "app@example.test", "--to", "dest@example.org",
			"--header", "Subject: "+subject)
		if err != nil {
			t.Fatalf("swaks: %v\n%s\nptrelay:\n%s", err, out, d.Stderr())
		}
	}
	send("before kill")
	if m := sink.WaitMessages(t, 1, 30*time.Second)[0]; m.From != "app@example.test" || m.To[0] != "dest@example.org" {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	pid := d.Pid()
	d.Kill()
	if !d.Exited() {
		t.Fatal("still running after Kill")
	}
	d.Restart()
	if d.Pid() == pid {
		t.Error("Restart kept the pid")
	}
	send("after restart")
	msgs := sink.WaitMessages(t, 2, 30*time.Second)
	if msgs[1].Header().Get("Subject") != "after restart" {
		t.Errorf("second message %q", msgs[1].Header().Get("Subject"))
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit code after SIGTERM: %d\n%s", code, d.Stderr())
	}
	if !strings.Contains(d.Stderr(), "--- run 2 ---") {
		t.Errorf("Stderr does not hold both runs:\n%s", d.Stderr())
	}
	if out, err := d.Command(t, "config", "check"); err != nil || !strings.Contains(out, sink.Addr()) {
		t.Errorf("config check: %v\n%s", err, out)
	}
}
