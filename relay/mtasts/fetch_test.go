package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/relay/relaytest"
)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

// policyServer is an HTTPS server on loopback with a certificate from a test CA for the names given; handler
// answers the policy requests.
func policyServer(t *testing.T, ca *relaytest.CA, names []string, handler http.HandlerFunc) string {
	t.Helper()
	certFile, keyFile := ca.Issue(t, strings.Join(names, "_"), relaytest.CertOptions{Hosts: names})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// fetcherTo is a Fetcher that reaches every host at addr, trusting ca.
func fetcherTo(addr string, ca *relaytest.CA) *Fetcher {
	return &Fetcher{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		RootCAs: ca.Pool,
		Timeout: 2 * time.Second,
	}
}

// TestFetch: the policy comes from https://mta-sts.<domain>/.well-known/mta-sts.txt over verified TLS; 404,
// 500, a redirect, a time-out, a policy too large or invalid and a certificate for another name all fail, each
// with its TLS-RPT result type.
func TestFetch(t *testing.T) {
	ca := relaytest.NewCA(t, t.TempDir())
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	var (
		mu    sync.Mutex
		paths []string
	)
	handler := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Host+r.URL.Path)
		mu.Unlock()
		switch r.Host {
		case "mta-sts.ok.test":
			w.Header().Set("Content-Type", "text/html") // served wrongly, still a policy
			_, _ = w.Write([]byte(goodPolicy))
		case "mta-sts.missing.test":
			http.NotFound(w, r)
		case "mta-sts.broken.test":
			http.Error(w, "oops", http.StatusInternalServerError)
		case "mta-sts.moved.test":
			http.Redirect(w, r, "https://mta-sts.ok.test/.well-known/mta-sts.txt", http.StatusMovedPermanently)
		case "mta-sts.slow.test":
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		case "mta-sts.huge.test":
			_, _ = w.Write([]byte(goodPolicy + "x-pad: " + strings.Repeat("a", MaxPolicy) + "\n"))
		case "mta-sts.invalid.test":
			_, _ = w.Write([]byte("version: STSv1\nmode: enforce\n"))
		}
	}
	names := []string{"mta-sts.ok.test", "mta-sts.missing.test", "mta-sts.broken.test", "mta-sts.moved.test",
		"mta-sts.slow.test", "mta-sts.huge.test", "mta-sts.invalid.test"}
	f := fetcherTo(policyServer(t, ca, names, handler), ca)
	f.Timeout = 500 * time.Millisecond
	wrongName := fetcherTo(policyServer(t, ca, []string{"www.elsewhere.test"}, handler), ca)

	ctx := context.Background()
	text, p, err := f.Fetch(ctx, "ok.test")
	if err != nil || text != goodPolicy || p.Mode != ModeEnforce || !p.Matches("mx.example.test") {
		t.Fatalf("Fetch ok.test = %q, %+v, %v", text, p, err)
	}
	mu.Lock()
	if paths[0] != "mta-sts.ok.test/.well-known/mta-sts.txt" {
		t.Errorf("requested %q", paths[0])
	}
	mu.Unlock()
	for _, c := range []struct {
		domain string
		f      *Fetcher
		result string
		says   string
	}{
		{"missing.test", f, "sts-policy-fetch-error", "404"},
		{"broken.test", f, "sts-policy-fetch-error", "500"},
		{"moved.test", f, "sts-policy-fetch-error", "redirect"},
		{"slow.test", f, "sts-policy-fetch-error", "deadline"},
		{"huge.test", f, "sts-policy-invalid", "larger than"},
		{"invalid.test", f, "sts-policy-invalid", "no max_age"},
		{"ok.test", wrongName, "sts-webpki-invalid", "certificate"},
	} {
		t.Run(c.domain, func(t *testing.T) {
			_, p, err := c.f.Fetch(ctx, c.domain)
			var fe *FetchError
			if p != nil || !errors.As(err, &fe) || fe.Result != c.result || !strings.Contains(err.Error(), c.says) {
				t.Errorf("Fetch = %+v, %v; want a %s saying %q", p, err, c.result, c.says)
			}
		})
	}
	okCount := 0
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if strings.HasPrefix(p, "mta-sts.ok.test") {
			okCount++
		}
	}
	if okCount != 1 {
		t.Errorf("mta-sts.ok.test was asked %d times; the redirect to it must not be followed", okCount)
	}
}
