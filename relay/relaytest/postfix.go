package relaytest

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ptrelay/internal/testkit"
)

// PostfixOptions configures a private Postfix instance acting as an authenticated smart host.
type PostfixOptions struct {
	// Addr is the submission listener (STARTTLS, AUTH after TLS), "127.0.0.4:0" style; port 0 picks a free
	// port. Default "127.0.0.1:0".
	Addr string
	// ImplicitTLSAddr, when set, adds a listener with implicit TLS (smtps / port 465 style).
	ImplicitTLSAddr string
	// Users maps SASL user names to passwords (PLAIN and LOGIN, from a Cyrus sasldb).
	Users map[string]string
	// RelayTo is the "host:port" every accepted message is relayed to, normally a Sink's Addr. Required.
	RelayTo string
	// CertFile and KeyFile are the server certificate; empty: MakeCert for localhost and the listener hosts,
	// and Pool trusts it.
	CertFile, KeyFile string
	// Hostname is myhostname (greeting, Received) and the SASL realm. Default "smarthost.test".
	Hostname string
	// AuthWithoutTLS offers AUTH on plaintext connections too (smtpd_tls_auth_only = no).
	AuthWithoutTLS bool
	// MainCF holds extra main.cf lines ("name = value"), applied last.
	MainCF []string
	// LogCommands has smtpd log every command its loopback clients send, for Transcripts. It logs much more
	// than that (debug_peer_level = 2): leave it off where the log is not read.
	LogCommands bool
}

// Postfix is a running private Postfix instance.
type Postfix struct {
	dir          string // instance root: conf/, queue/, data/, sasldb2, maillog
	addr         string
	implicitAddr string
	mxAddrs      []string // an MX instance's listeners (StartPostfixMX)
	certFile     string
	keyFile      string
	pool         *x509.CertPool
}

// StartPostfix starts a private Postfix (its own config, queue and data directories, its own listeners, log in
// a file) that accepts mail only from the SASL users over TLS and relays it to opt.RelayTo; no local delivery.
// It is stopped when the test ends, and its directory is kept when the test failed. Needs root.
func StartPostfix(t testing.TB, opt PostfixOptions) *Postfix {
	t.Helper()
	Require(t, "postfix", "saslpasswd2")
	RequireRoot(t)
	requireSASLPlugins(t)
	if opt.RelayTo == "" {
		t.Fatal("relaytest: PostfixOptions.RelayTo is required")
	}
	if opt.Hostname == "" {
		opt.Hostname = "smarthost.test"
	}
	pf := newPostfix(t)
	pf.certFile, pf.keyFile = opt.CertFile, opt.KeyFile
	pf.writeSASL(t, opt)

	host, port, pick := splitAddr(t, opt.Addr, "127.0.0.1")
	var ihost string
	var iport int
	var ipick bool
	if opt.ImplicitTLSAddr != "" {
		ihost, iport, ipick = splitAddr(t, opt.ImplicitTLSAddr, "127.0.0.1")
	}
	if pf.certFile == "" {
		hosts := []string{"localhost", opt.Hostname, host}
		if ihost != "" && ihost != host {
			hosts = append(hosts, ihost)
		}
		pf.certFile, pf.keyFile, pf.pool = MakeCert(t, pf.confDir(), hosts...)
	}
	pf.start(t, pick || ipick, func() []string {
		p, ip := port, iport
		if pick {
			p = FreePort(t, host)
		}
		if ipick {
			ip = FreePort(t, ihost)
		}
		pf.addr = net.JoinHostPort(host, strconv.Itoa(p))
		listeners := []string{pf.addr}
		if ihost != "" {
			pf.implicitAddr = net.JoinHostPort(ihost, strconv.Itoa(ip))
			listeners = append(listeners, pf.implicitAddr)
		}
		pf.writeConfig(t, opt)
		return listeners
	})
	return pf
}

// newPostfix makes an instance directory laid out for Postfix; it is removed when the test ends, or kept and
// named in the log when the test failed.
func newPostfix(t testing.TB) *Postfix {
	t.Helper()
	// Not t.TempDir: Postfix's daemons run as the postfix user and must traverse to their files, and
	// t.TempDir's parents are private to root.
	dir, err := os.MkdirTemp("", "relaytest-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relaytest: Postfix instance kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	pf := &Postfix{dir: dir}
	if err := pf.makeDirs(); err != nil {
		t.Fatal(err)
	}
	return pf
}

// start starts the instance and waits until its listeners accept connections. configure picks the addresses,
// writes main.cf and master.cf and returns the listeners; when the ports were picked (retry) and one was
// taken meanwhile, it is called again for new ones. The instance is stopped when the test ends.
func (pf *Postfix) start(t testing.TB, retry bool, configure func() (listeners []string)) {
	t.Helper()
	var lastLog string
	for attempt := 0; attempt < bindAttempts; attempt++ {
		listeners := configure()
		if err := os.WriteFile(filepath.Join(pf.dir, "queue", "quick-start"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, time.Minute, nil, lookup("postfix"), "-c", pf.confDir(), "start")
		if err == nil {
			t.Cleanup(pf.stop)
			for _, l := range listeners {
				WaitTCP(t, l, 20*time.Second)
			}
			return
		}
		pf.stop()
		lastLog = out + "\n" + pf.Log()
		if !retry || !isBindError(lastLog) {
			t.Fatalf("relaytest: postfix start: %v\n%s", err, lastLog)
		}
	}
	t.Fatalf("relaytest: Postfix could not bind its ports:\n%s", lastLog)
}

// requireSASLPlugins checks for the Cyrus plug-ins smtpd needs for PLAIN, LOGIN and the sasldb: without them
// Postfix starts but offers no AUTH, and the test would fail far from the cause.
func requireSASLPlugins(t testing.TB) {
	t.Helper()
	for _, lib := range []struct{ file, pkg string }{
		{"libplain.so*", "libsasl2-modules"}, {"liblogin.so*", "libsasl2-modules"}, {"libsasldb.so*", "libsasl2-modules-db"},
	} {
		if m, _ := filepath.Glob(filepath.Join("/usr/lib/*/sasl2", lib.file)); len(m) == 0 {
			if m, _ := filepath.Glob(filepath.Join("/usr/lib/sasl2", lib.file)); len(m) == 0 {
				testkit.Missing(t, "end-to-end test needs the Cyrus SASL plug-in "+lib.file+" (apt-get install "+lib.pkg+")")
			}
		}
	}
}

func (pf *Postfix) confDir() string { return filepath.Join(pf.dir, "conf") }

// makeDirs lays out the instance as Debian's postfix-files would, and marks the queue for a quick start: the
// integrity checks of "postfix start" (post-install, a walk of the queue) take seconds per instance, and a new
// instance has nothing to check.
func (pf *Postfix) makeDirs() error {
	ids := func(name string) (int, int, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, fmt.Errorf("relaytest: no %s user (apt-get install postfix): %w", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid, nil
	}
	uid, _, err := ids("postfix")
	if err != nil {
		return err
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		return fmt.Errorf("relaytest: no postdrop group (apt-get install postfix): %w", err)
	}
	postdrop, _ := strconv.Atoi(g.Gid)
	dirs := []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{"conf", 0, 0, 0o755}, {"conf/sasl", 0, 0, 0o755}, {"data", uid, 0, 0o700}, {"queue", 0, 0, 0o755},
		{"queue/pid", 0, 0, 0o755}, {"queue/maildrop", uid, postdrop, 0o730}, {"queue/public", uid, postdrop, 0o710},
	}
	for _, q := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
		"private", "saved", "trace"} {
		dirs = append(dirs, struct {
			path     string
			uid, gid int
			mode     os.FileMode
		}{"queue/" + q, uid, 0, 0o700})
	}
	for _, d := range dirs {
		p := filepath.Join(pf.dir, d.path)
		if err := os.Mkdir(p, d.mode); err != nil {
			return err
		}
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil { // Mkdir's mode went through the umask
			return err
		}
	}
	return nil
}

func (pf *Postfix) chownPostfix(rel string) error {
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("relaytest: no postfix user (apt-get install postfix): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(filepath.Join(pf.dir, rel), uid, gid)
}

// writeSASL creates the Cyrus sasldb with the users and the smtpd.conf that points Postfix's smtpd at it.
// Debian's Postfix 3.7 reads $config_directory/sasl/smtpd.conf (seen with strace; cyrus_sasl_config_path is not
// used), so it lives in conf/sasl.
func (pf *Postfix) writeSASL(t testing.TB, opt PostfixOptions) {
	t.Helper()
	db := filepath.Join(pf.dir, "sasldb2")
	names := make([]string, 0, len(opt.Users))
	for name := range opt.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out, err := run(t, 30*time.Second, []byte(opt.Users[name]), lookup("saslpasswd2"),
			"-f", db, "-p", "-c", "-u", opt.Hostname, name)
		if err != nil {
			t.Fatalf("relaytest: saslpasswd2 %s: %v\n%s", name, err, out)
		}
	}
	if len(names) > 0 {
		if err := pf.chownPostfix("sasldb2"); err != nil {
			t.Fatal(err)
		}
	}
	conf := "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: " + db + "\nmech_list: PLAIN LOGIN\n"
	if err := os.WriteFile(filepath.Join(pf.confDir(), "sasl", "smtpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (pf *Postfix) writeConfig(t testing.TB, opt PostfixOptions) {
	t.Helper()
	authOnly := "yes"
	if opt.AuthWithoutTLS {
		authOnly = "no"
	}
	main := pf.commonMain(t, opt.Hostname, opt.RelayTo, pf.addr, pf.implicitAddr)
	main = append(main,
		"local_transport = error:5.1.1 no local delivery on this test smart host",
		"smtpd_relay_restrictions = permit_sasl_authenticated, reject",
		"smtpd_sasl_auth_enable = yes",
		"smtpd_sasl_type = cyrus",
		"smtpd_sasl_path = smtpd",
		"smtpd_sasl_local_domain = $myhostname",
		"smtpd_tls_security_level = may",
		"smtpd_tls_auth_only = "+authOnly,
		"smtpd_tls_cert_file = "+pf.certFile,
		"smtpd_tls_key_file = "+pf.keyFile,
	)
	if opt.LogCommands {
		main = append(main, postfixCommandLogging...)
	}
	main = append(main, opt.MainCF...)
	master := listenAddr(pf.addr) + " inet n - n - - smtpd\n"
	if pf.implicitAddr != "" {
		master += listenAddr(pf.implicitAddr) + " inet n - n - - smtpd\n" +
			"  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt\n"
	}
	pf.writeFiles(t, main, master)
}

// commonMain is the main.cf every private instance starts from: its own directories and log, no local
// delivery, loopback only, everything accepted relayed to relayTo, no tarpit, quick retries. addrs are the
// instance's listeners: an IPv6 one among them (or relayTo) turns IPv6 on.
func (pf *Postfix) commonMain(t testing.TB, hostname, relayTo string, addrs ...string) []string {
	t.Helper()
	relayHost, relayPort, err := net.SplitHostPort(relayTo)
	if err != nil {
		t.Fatalf("relaytest: RelayTo %q: %v", relayTo, err)
	}
	protocols := "ipv4"
	for _, a := range append(addrs, relayTo) {
		if h, _, _ := net.SplitHostPort(a); strings.Contains(h, ":") {
			protocols = "all"
		}
	}
	return []string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(pf.dir, "queue"),
		"data_directory = " + filepath.Join(pf.dir, "data"),
		"mail_owner = postfix",
		"setgid_group = postdrop",
		// Several instances run at once: each logs to its own file under its own name.
		"syslog_name = " + filepath.Base(pf.dir),
		"maillog_file = " + filepath.Join(pf.dir, "maillog"),
		"maillog_file_prefixes = " + pf.dir,
		"myhostname = " + hostname,
		"mydomain = " + hostname,
		"myorigin = $myhostname",
		"mydestination =",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"inet_interfaces = loopback-only",
		"inet_protocols = " + protocols,
		"mynetworks =",
		"relayhost = [" + relayHost + "]:" + relayPort,
		"smtpd_recipient_restrictions =",
		"smtp_tls_security_level = none",
		"smtp_sasl_auth_enable = no",
		// Postfix sleeps after each error reply by default; tests that provoke errors need no tarpit.
		"smtpd_error_sleep_time = 0",
		// Deferred mail is retried soon so that a test which fixes the sink sees it arrive.
		"minimal_backoff_time = 5s",
		"maximal_backoff_time = 10s",
		"queue_run_delay = 5s",
	}
}

// listenAddr is addr as a master.cf service name ("[::1]:25" for IPv6).
func listenAddr(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + p
}

// writeFiles writes main.cf and master.cf: the listeners (smtpd services) given, then Postfix's own services.
func (pf *Postfix) writeFiles(t testing.TB, main []string, listeners string) {
	t.Helper()
	// Debian's master.cf chroots most services into the queue directory; a private instance does not, so
	// that smtpd reaches the sasldb and the certificate by their absolute paths.
	master := listeners + `cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(pf.confDir(), "main.cf"), []byte(strings.Join(main, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pf.confDir(), "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stop stops the instance as "postfix stop" does (SIGTERM to the master, which ends its children), without
// its one-second polling; a master still alive after 10 s gets SIGKILL. The leftovers of the master's process
// group get SIGKILL, and the pid file goes, so that a second stop cannot signal a recycled pid.
func (pf *Postfix) stop() {
	pid := pf.masterPID()
	if pid <= 0 {
		return
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = os.Remove(filepath.Join(pf.dir, "queue", "pid", "master.pid"))
}

func (pf *Postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(pf.dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// alive reports whether pid runs. A zombie counts as dead: in a container, PID 1 may never reap the daemonized
// master.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// Addr is the STARTTLS submission listener's "host:port".
func (pf *Postfix) Addr() string { return pf.addr }

// ImplicitTLSAddr is the implicit-TLS listener's "host:port" ("" when not configured).
func (pf *Postfix) ImplicitTLSAddr() string { return pf.implicitAddr }

// CertFile is the server certificate (PEM), usable as a trust file by clients.
func (pf *Postfix) CertFile() string { return pf.certFile }

// Pool trusts the certificate StartPostfix made (nil when the caller supplied CertFile).
func (pf *Postfix) Pool() *x509.CertPool { return pf.pool }

// Dir is the instance's root directory (conf/, queue/, data/, maillog).
func (pf *Postfix) Dir() string { return pf.dir }

// Log is the instance's mail log, for failure messages.
func (pf *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(pf.dir, "maillog"))
	return string(b)
}

// QueueCount is the number of messages in the instance's queue (incoming, active, deferred, hold): mail it
// accepted and has not relayed yet.
func (pf *Postfix) QueueCount() int {
	n := 0
	for _, q := range []string{"incoming", "active", "deferred", "hold"} {
		_ = filepath.WalkDir(filepath.Join(pf.dir, "queue", q), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

// Stop stops the instance now (a smart host going down) and returns once its listeners refuse connections
// (its smtpd processes get the master's SIGTERM a moment after the master).
func (pf *Postfix) Stop() {
	pf.stop()
	for _, addr := range []string{pf.addr, pf.implicitAddr} {
		for i := 0; addr != "" && i < 200; i++ {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			c.Close()
			time.Sleep(50 * time.Millisecond)
		}
	}
}
