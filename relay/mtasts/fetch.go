package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Limits of a policy fetch (RFC 8461 3.3 suggests both): a server that answers slowly or endlessly cannot hold
// a delivery for long.
const (
	FetchTimeout = time.Minute
	MaxPolicy    = 64 << 10
)

// FetchError is a policy that could not be fetched or read, with its TLS-RPT result type (RFC 8460 4.3).
type FetchError struct {
	Result string // "sts-policy-fetch-error", "sts-policy-invalid" or "sts-webpki-invalid"
	Err    error
}

func (e *FetchError) Error() string { return e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// Fetcher fetches policies from https://mta-sts.<domain>/.well-known/mta-sts.txt.
type Fetcher struct {
	// DialContext opens the TCP connection to "mta-sts.<domain>:443". It must resolve the name with ptrelay's
	// own resolver (dns.resolvers): the system's resolver may be another one. NewResolverDialer makes one.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verify the server's certificate (PKIX, RFC 8461 3.3); nil: the system's roots (SSL_CERT_FILE).
	RootCAs *x509.CertPool
	// Timeout bounds one fetch; 0: FetchTimeout.
	Timeout time.Duration
	// Port replaces 443 (tests); "" in production.
	Port string
}

// Fetch returns the policy text of domain and the policy parsed from it. Redirects are refused and nothing is
// cached by HTTP (RFC 8461 3.3); only a 200 answer of at most MaxPolicy bytes counts; the Content-Type is not
// checked (many servers send the policy as text/html or octet-stream). Errors are *FetchError.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (string, *Policy, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = FetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := "mta-sts." + domain
	url := "https://" + host + "/.well-known/mta-sts.txt"
	if f.Port != "" {
		url = "https://" + net.JoinHostPort(host, f.Port) + "/.well-known/mta-sts.txt"
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // the policy host is reached as ptrelay reaches MX hosts, never through a proxy
			DialContext:         f.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: f.RootCAs, MinVersion: tls.VersionTLS12},
			DisableKeepAlives:   true,
			TLSHandshakeTimeout: timeout,
			ForceAttemptHTTP2:   true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", nil, &FetchError{Result: "sts-policy-fetch-error", Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, fetchErr(url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return "", nil, &FetchError{Result: "sts-policy-fetch-error",
			Err: fmt.Errorf("%s answered %s, a redirect to %q: RFC 8461 3.3 forbids following it", url, resp.Status, resp.Header.Get("Location"))}
	case resp.StatusCode != http.StatusOK:
		return "", nil, &FetchError{Result: "sts-policy-fetch-error", Err: fmt.Errorf("%s answered %s", url, resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicy+1))
	if err != nil {
		return "", nil, fetchErr(url, err)
	}
	if len(body) > MaxPolicy {
		return "", nil, &FetchError{Result: "sts-policy-invalid", Err: fmt.Errorf("%s: the policy is larger than %d bytes", url, MaxPolicy)}
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return "", nil, &FetchError{Result: "sts-policy-invalid", Err: fmt.Errorf("%s: %w", url, err)}
	}
	return string(body), p, nil
}

// fetchErr names a certificate problem as the TLS-RPT result sts-webpki-invalid.
func fetchErr(url string, err error) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return &FetchError{Result: "sts-webpki-invalid", Err: fmt.Errorf("%s: the certificate is not valid: %w", url, err)}
	}
	return &FetchError{Result: "sts-policy-fetch-error", Err: fmt.Errorf("%s: %w", url, err)}
}

// NewResolverDialer returns a DialContext that resolves names with lookup (ptrelay's resolver) and tries their
// addresses in order, from bind when it is valid (delivery.bind).
func NewResolverDialer(lookup func(ctx context.Context, host string) ([]netip.Addr, error), bind netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		d := net.Dialer{Timeout: 30 * time.Second}
		var last error
		for _, a := range addrs {
			if bind.IsValid() {
				if bind.Unmap().Is4() != a.Unmap().Is4() {
					continue
				}
				d.LocalAddr = &net.TCPAddr{IP: bind.AsSlice()}
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		if last == nil {
			last = fmt.Errorf("no address of %s to connect to", host)
		}
		return nil, last
	}
}
