package relaytest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// MXHost is one mail exchanger of a Postfix MX instance: its own loopback address and its own TLS.
type MXHost struct {
	IP string // a loopback address, "127.0.0.61"
	// CertFile and KeyFile are the certificate (with its chain) and key the host offers with STARTTLS; empty:
	// the host does not offer STARTTLS at all.
	CertFile, KeyFile string
}

// PostfixMXOptions configures a private Postfix instance playing the mail exchangers of some domains, as
// delivery meets them on the internet.
type PostfixMXOptions struct {
	// Hosts are the exchangers. All listen on one port, as every MX listens on 25 and ptrelay's delivery.port
	// is one port for all of them.
	Hosts []MXHost
	// Port is that port; 0 picks one that is free on every host's address.
	Port int
	// Domains are the recipient domains accepted (relay_domains); mail for others is refused with
	// 554 5.7.1 Relay access denied, as an MX refuses to be an open relay.
	Domains []string
	// RelayTo is the "host:port" every accepted message goes on to, normally a Sink's Addr. Required.
	RelayTo string
	// Hostname is myhostname (greeting, Received). Default "mx.test".
	Hostname string
	// MainCF holds extra main.cf lines ("name = value"), applied last.
	MainCF []string
}

// StartPostfixMX starts a private Postfix that receives mail for opt.Domains from anyone on opt.Hosts, over
// STARTTLS where the host has a certificate (and in clear where the client does not use it), records the TLS
// of each session in its Received header ("with ESMTPS", "using TLSv1.3 with cipher ..."), and relays what it
// accepted to opt.RelayTo. It is stopped when the test ends, and its directory is kept when the test failed.
// Needs root.
func StartPostfixMX(t testing.TB, opt PostfixMXOptions) *Postfix {
	t.Helper()
	Require(t, "postfix")
	RequireRoot(t)
	if opt.RelayTo == "" || len(opt.Hosts) == 0 || len(opt.Domains) == 0 {
		t.Fatal("relaytest: PostfixMXOptions needs Hosts, Domains and RelayTo")
	}
	if opt.Hostname == "" {
		opt.Hostname = "mx.test"
	}
	pf := newPostfix(t)
	// The certificates are copied into the instance, where its daemons can read them whatever the caller's
	// directory permissions.
	hosts := append([]MXHost(nil), opt.Hosts...)
	for i, h := range hosts {
		if h.CertFile == "" {
			continue
		}
		hosts[i].CertFile = pf.copyConf(t, h.CertFile, "mx"+strconv.Itoa(i)+".pem", 0o644)
		hosts[i].KeyFile = pf.copyConf(t, h.KeyFile, "mx"+strconv.Itoa(i)+".key", 0o600)
	}
	pf.start(t, opt.Port == 0, func() []string {
		port := opt.Port
		if port == 0 {
			port = FreePort(t, hosts[0].IP)
		}
		var listeners []string
		master := ""
		for _, h := range hosts {
			addr := net.JoinHostPort(h.IP, strconv.Itoa(port))
			listeners = append(listeners, addr)
			master += listenAddr(addr) + " inet n - n - - smtpd\n"
			if h.CertFile == "" {
				master += "  -o smtpd_tls_security_level=none\n"
				continue
			}
			master += "  -o smtpd_tls_security_level=may\n  -o smtpd_tls_cert_file=" + h.CertFile +
				"\n  -o smtpd_tls_key_file=" + h.KeyFile + "\n"
		}
		pf.addr = listeners[0]
		pf.mxAddrs = listeners
		main := pf.commonMain(t, opt.Hostname, opt.RelayTo, listeners...)
		main = append(main,
			"local_transport = error:5.1.1 no local delivery on this test MX",
			"relay_domains = "+strings.Join(opt.Domains, ", "),
			"relay_transport = relay:"+nextHop(opt.RelayTo),
			"smtpd_relay_restrictions = reject_unauth_destination",
			"smtpd_sasl_auth_enable = no",
			"smtpd_tls_received_header = yes",
			"smtpd_tls_loglevel = 1",
		)
		pf.writeFiles(t, append(main, opt.MainCF...), master)
		return listeners
	})
	return pf
}

// nextHop is "host:port" as a Postfix next hop without MX lookup: "[host]:port".
func nextHop(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return "[" + h + "]:" + p
}

// copyConf copies a file into the instance's conf directory with mode and returns its path there.
func (pf *Postfix) copyConf(t testing.TB, from, name string, mode os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(pf.confDir(), name)
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	return to
}

// MXAddrs are an MX instance's listeners, "ip:port", in the order of PostfixMXOptions.Hosts.
func (pf *Postfix) MXAddrs() []string { return append([]string(nil), pf.mxAddrs...) }

// Port is the port of the first listener (for an MX instance, the one port of every host).
func (pf *Postfix) Port() int {
	_, p, _ := net.SplitHostPort(pf.addr)
	n, _ := strconv.Atoi(p)
	return n
}
