package oauth

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ptrelay/relay/oauth/oauthtest"
)

// clock is an injected clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func secretFile(t *testing.T, secret string) (func() (string, error), string) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() (string, error) {
		b, err := os.ReadFile(p)
		return strings.TrimSuffix(string(b), "\n"), err
	}, p
}

// TestClientCredentials: the client-credentials grant with Microsoft's scope; the token is cached, renewed
// RenewBefore its expiry by the injected clock (no sleeping), and a refused token is fetched again at once.
func TestClientCredentials(t *testing.T) {
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s3cret",
		Scope: ScopeMicrosoft, ExpiresIn: 3600})
	clk := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	secret, path := secretFile(t, "s3cret")
	src := New(Options{Provider: Microsoft, TokenURL: ts.URL, Tenant: "contoso.onmicrosoft.com", ClientID: "app",
		Secret: secret, SecretSource: path, Now: clk.Now})
	ctx := context.Background()

	t1, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v (endpoint: %s)", err, ts.LastRefusal())
	}
	if t1.Value != "tok-1" || !ts.Valid(t1.Value) {
		t.Fatalf("token %+v", t1)
	}
	if want := clk.Now().Add(time.Hour - RenewBefore); t1.RenewAt.Sub(want).Abs() > 5*time.Second {
		t.Errorf("renewed at %v, want about %v (5 minutes before expiry)", t1.RenewAt, want)
	}
	clk.Add(54 * time.Minute)
	if t2, _ := src.Token(ctx); t2.Value != "tok-1" || ts.Requests() != 1 {
		t.Fatalf("within its life the cached token is used: got %q after %d requests", t2.Value, ts.Requests())
	}
	clk.Add(2 * time.Minute) // 56 minutes: inside the last 5
	t3, err := src.Token(ctx)
	if err != nil || t3.Value != "tok-2" || ts.Requests() != 2 {
		t.Fatalf("near its expiry a new token is fetched: %+v, %v, %d requests", t3, err, ts.Requests())
	}
	src.Invalidate("tok-1") // an old value changes nothing
	if t4, _ := src.Token(ctx); t4.Value != "tok-2" {
		t.Fatalf("invalidating an older token dropped the current one: %q", t4.Value)
	}
	src.Invalidate("tok-2")
	if t5, _ := src.Token(ctx); t5.Value != "tok-3" {
		t.Fatalf("an invalidated token is fetched again: %q", t5.Value)
	}
	if u := endpoint(Options{Provider: Microsoft, Tenant: "contoso.onmicrosoft.com"}); u != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Errorf("Microsoft's token URL from the tenant: %s", u)
	}
}

// TestJWTBearer: a Google service account's token comes from an RS256 assertion the endpoint verifies with the
// account's public key (iss, sub = the mailbox, scope, aud); a subject without delegation gets Google's
// unauthorized_client, with the fix that names the Admin console's domain-wide delegation.
func TestJWTBearer(t *testing.T) {
	sa := oauthtest.WriteServiceAccount(t, t.TempDir())
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{Key: &sa.Key.PublicKey, Email: sa.Email,
		Subject: "relay@example.com", Scope: ScopeGoogle})
	src := New(Options{Provider: Google, TokenURL: ts.URL, ServiceAccountFile: sa.Path, Subject: "relay@example.com"})
	tok, err := src.Token(context.Background())
	if err != nil || tok.Value != "tok-1" {
		t.Fatalf("Token = %+v, %v (endpoint: %s)", tok, err, ts.LastRefusal())
	}

	other := New(Options{Provider: Google, TokenURL: ts.URL, ServiceAccountFile: sa.Path, Subject: "boss@example.com"})
	_, err = other.Token(context.Background())
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != "unauthorized_client" || !strings.Contains(oe.Fix, "Domain-wide delegation") ||
		!strings.Contains(oe.Error(), "token endpoint: unauthorized_client") {
		t.Fatalf("no delegation: %v (%+v)", err, oe)
	}

	// A key that is not the account's: the endpoint's signature check refuses it.
	forged := oauthtest.WriteServiceAccount(t, t.TempDir())
	if err := os.Rename(forged.Path, sa.Path); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Provider: Google, TokenURL: ts.URL, ServiceAccountFile: sa.Path, Subject: "relay@example.com"}).Token(context.Background())
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" || !strings.Contains(ts.LastRefusal(), "signature") {
		t.Fatalf("a key the endpoint does not know: %v, endpoint said %q", err, ts.LastRefusal())
	}
}

// TestTokenErrors: each refusal quotes the provider's code and carries its fix; an endpoint that is down is a
// failure to reach it, not a refusal.
func TestTokenErrors(t *testing.T) {
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "right"})
	wrong, path := secretFile(t, "wrong")
	src := func() *Source {
		return New(Options{Provider: Microsoft, TokenURL: ts.URL, ClientID: "app", Secret: wrong, SecretSource: path})
	}
	for _, c := range []struct {
		name          string
		status        int
		code, desc    string
		wantError     string
		wantFix       string
		wantRefused   bool
		wantAADSTS    string
		useRightCreds bool
	}{
		{"wrong secret", 0, "", "", "token endpoint: invalid_client AADSTS7000215", "not its Secret ID", true, "AADSTS7000215", false},
		{"expired secret", 401, "invalid_client", "AADSTS7000222: The provided client secret keys for app 'x' are expired.\r\nTrace ID: 1", "AADSTS7000222", "has expired", true, "AADSTS7000222", false},
		{"unknown app", 400, "unauthorized_client", "AADSTS700016: Application with identifier 'x' was not found in the directory.", "AADSTS700016", "client_id", true, "AADSTS700016", false},
		{"server error", 503, "", "", "answered HTTP 503", "status page", false, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts.Refuse(c.status, c.code, c.desc)
			defer ts.Refuse(0, "", "")
			_, err := src().Token(context.Background())
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if !strings.Contains(oe.Error(), c.wantError) || !strings.Contains(oe.Fix, c.wantFix) ||
				oe.Refused() != c.wantRefused || oe.AADSTS != c.wantAADSTS {
				t.Errorf("error %q fix %q refused %v aadsts %q", oe.Error(), oe.Fix, oe.Refused(), oe.AADSTS)
			}
			if strings.Contains(oe.Error(), "\n") || strings.Contains(oe.Error(), "Trace ID") {
				t.Errorf("the error keeps more than the description's first line: %q", oe.Error())
			}
		})
	}
	ts.Close()
	_, err := src().Token(context.Background())
	var oe *Error
	if !errors.As(err, &oe) || oe.Refused() || !strings.Contains(oe.Fix, "cannot be reached") {
		t.Fatalf("endpoint down: %v (%+v)", err, oe)
	}
}

// TestTokenConcurrency: sessions that log in at once share one request.
func TestTokenConcurrency(t *testing.T) {
	ts := oauthtest.StartTokenServer(t, oauthtest.TokenServerOptions{ClientID: "app", Secret: "s"})
	secret, _ := secretFile(t, "s")
	src := New(Options{Provider: Generic, TokenURL: ts.URL, ClientID: "app", Secret: secret,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := src.Token(context.Background()); err != nil || tok.Value != "tok-1" {
				t.Errorf("Token = %+v, %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if n := ts.Requests(); n != 1 {
		t.Errorf("%d requests for 8 concurrent logins, want 1", n)
	}
}
