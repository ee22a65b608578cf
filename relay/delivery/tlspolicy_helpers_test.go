package delivery

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/dnscheck"
	"ptrelay/dnscheck/dnstest"
	"ptrelay/queue"
	"ptrelay/relay/mtasts"
	"ptrelay/relay/relaytest"
	"ptrelay/relay/tlspolicy"
)

// policyEnv is a small internet for the TLS policy scenarios: an in-process DNS server whose secure zones
// answer with the AD bit (dnstest.Server.Secure), MX hosts played by go-smtp peers on 127.0.0.x with
// certificates from a test CA, an HTTPS server serving MTA-STS policies with a certificate from the same CA,
// and the policy engine with an injected clock for the cache.
type policyEnv struct {
	t     *testing.T
	ca    *relaytest.CA
	caDER []byte
	dns   *dnstest.Server
	// dnsAddr is the resolver delivery asks: the in-process server, or a real validating unbound.
	dnsAddr string
	port    int // every MX host's SMTP port (delivery.port)
	sts     *stsServer
	clock   *testClock
	dane    *tlspolicy.DANEState
	cache   *mtasts.Cache

	mu       sync.Mutex
	sessions []tlspolicy.Session
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	e := &policyEnv{t: t, ca: relaytest.NewCA(t, t.TempDir()), clock: &testClock{t: time.Now()}, dane: &tlspolicy.DANEState{}}
	raw, err := os.ReadFile(e.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	e.caDER = b.Bytes
	e.dns = dnstest.New(t)
	e.dnsAddr = e.dns.Addr()
	e.port = relaytest.FreePort(t, "127.0.0.30")
	e.sts = startSTSServer(t, e)
	e.dane.Set(dnscheck.DNSSECStatus{Validating: true, Detail: "test resolver"}, time.Now())
	return e
}

// cert issues a certificate for names from the test CA; chain adds the CA certificate after the leaf (what
// DANE-TA needs to find its anchor).
func (e *policyEnv) cert(name string, chain bool, names ...string) tls.Certificate {
	e.t.Helper()
	certFile, keyFile := e.ca.Issue(e.t, name, relaytest.CertOptions{Hosts: names})
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		e.t.Fatal(err)
	}
	if chain {
		c.Certificate = append(c.Certificate, e.caDER)
	}
	return c
}

// tlsa is a TLSA record's data: SHA-256 of the certificate (selector 0): the test certificates share one key,
// so only whole certificates tell them apart.
func tlsaOf(der []byte) string {
	h := sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(h[:]))
}

// mx starts an MX host at ip offering STARTTLS with cert (nil: no STARTTLS).
func (e *policyEnv) mx(ip string, cert *tls.Certificate) *fakePeer {
	e.t.Helper()
	return startFake(e.t, ip+":"+strconv.Itoa(e.port), func(f *fakePeer) {
		if cert != nil {
			f.tls = &tls.Config{Certificates: []tls.Certificate{*cert}}
		}
	})
}

// engine is the policy engine of the scenarios, reporting its sessions to e. Its MTA-STS cache is the env's,
// shared by every engine made for it, as the daemon's is by every attempt.
func (e *policyEnv) engine(res *dnscheck.Resolver) *tlspolicy.Engine {
	if e.cache == nil {
		f := &mtasts.Fetcher{DialContext: mtasts.NewResolverDialer(res.LookupAddrs, netip.Addr{}), RootCAs: e.ca.Pool,
			Timeout: 500 * time.Millisecond, Port: e.sts.port}
		e.cache = mtasts.NewCache(mtasts.Options{Store: &mtasts.MemStore{}, LookupTXT: res.LookupTXT,
			Temporary: func(err error) bool { return errors.Is(err, dnscheck.ErrTemporary) }, Fetch: f.Fetch,
			Now: e.clock.Now, Log: slog.New(slog.DiscardHandler)})
	}
	return tlspolicy.New(tlspolicy.Options{Resolver: res, MTASTS: e.cache, DANE: e.dane, RootCAs: e.ca.Pool,
		Log: slog.New(slog.DiscardHandler), OnSession: func(s tlspolicy.Session) {
			e.mu.Lock()
			e.sessions = append(e.sessions, s)
			e.mu.Unlock()
		}})
}

func (e *policyEnv) reported(domain, result string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.sessions {
		if s.Domain == domain && s.Result == result {
			n++
		}
	}
	return n
}

// run delivers with the engine; cfg's zero values are testConfig's, delivery.port the MX hosts' port.
func (e *policyEnv) run(cfg *config.Config, st *queue.Store) (*Scheduler, *recorder, func()) {
	e.t.Helper()
	res := resolver(e.t, e.dnsAddr)
	eng := e.engine(res)
	return runWith(e.t, cfg, st, res, Options{}, func(s *Scheduler) { s.tlsEngine = eng })
}

func (e *policyEnv) config() *config.Config {
	cfg := testConfig(e.port)
	cfg.Queue.RetryMin = config.Duration(time.Hour) // one attempt per message unless a test asks for more
	cfg.Queue.RetryMax = config.Duration(time.Hour)
	cfg.Queue.Lifetime = config.Duration(24 * time.Hour)
	return cfg
}

// domain publishes records for domain: MX hosts (name -> IP, by preference in order), in a zone that is
// DNSSEC-secure when secure is set.
func (e *policyEnv) domain(domain string, secure bool, mx ...string) {
	for i := 0; i+1 < len(mx); i += 2 {
		e.dns.Add(fmt.Sprintf("%s. MX %d %s.", domain, 10*(i/2+1), mx[i]), fmt.Sprintf("%s. A %s", mx[i], mx[i+1]))
	}
	if secure {
		e.dns.Secure(domain)
	}
}

// publishSTS publishes an MTA-STS record with id and serves policy for domain.
func (e *policyEnv) publishSTS(domain, id, policy string) {
	e.dns.Remove("_mta-sts."+domain, 0)
	e.dns.Add(fmt.Sprintf(`_mta-sts.%s. TXT "v=STSv1; id=%s;"`, domain, id), "mta-sts."+domain+". A 127.0.0.1")
	e.sts.set(domain, policy, 0)
}

func stsPolicy(mode string, mx ...string) string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + mode + "\r\n")
	for _, m := range mx {
		b.WriteString("mx: " + m + "\r\n")
	}
	b.WriteString("max_age: 604800\r\n")
	return b.String()
}

// stsServer serves MTA-STS policies over HTTPS on 127.0.0.1, one per mta-sts.<domain> host name (SNI picks
// the certificate), answering each domain as set: a policy, or an HTTP status.
type stsServer struct {
	port string

	mu       sync.Mutex
	policies map[string]string
	status   map[string]int
	requests map[string]int
	// after, when set, runs once a request has been answered, with the domain's request count.
	after func(domain string, n int)
}

func startSTSServer(t *testing.T, e *policyEnv) *stsServer {
	s := &stsServer{policies: map[string]string{}, status: map[string]int{}, requests: map[string]int{}}
	certs := map[string]*tls.Certificate{}
	var certMu sync.Mutex
	cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		certMu.Lock()
		defer certMu.Unlock()
		if c, ok := certs[h.ServerName]; ok {
			return c, nil
		}
		c := e.cert("sts-"+h.ServerName, false, h.ServerName)
		certs[h.ServerName] = &c
		return &c, nil
	}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		domain := strings.TrimPrefix(host, "mta-sts.")
		s.mu.Lock()
		s.requests[domain]++
		n, after := s.requests[domain], s.after
		policy, status := s.policies[domain], s.status[domain]
		s.mu.Unlock()
		if after != nil {
			defer after(domain, n)
		}
		switch {
		case r.URL.Path != "/.well-known/mta-sts.txt":
			http.NotFound(w, r)
		case status == stall:
			<-r.Context().Done() // until the fetcher gives up
		case status == http.StatusFound:
			http.Redirect(w, r, "https://elsewhere.test/policy.txt", status)
		case status != 0:
			http.Error(w, "no", status)
		default:
			_, _ = w.Write([]byte(policy))
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// stall is a status for stsServer.set: the server never answers.
const stall = -1

func (s *stsServer) set(domain, policy string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[domain], s.status[domain] = policy, status
}

func (s *stsServer) fetches(domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[domain]
}

// readBody returns a queued message's stored body.
func readBody(t *testing.T, st *queue.Store, id string) string {
	t.Helper()
	rc, err := st.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
