// Package oauth gets the OAuth2 access tokens a smart host's XOAUTH2 login needs, and keeps each one in memory
// until shortly before it expires: Microsoft Entra ID's client-credentials grant (Microsoft 365), Google's JWT
// bearer grant for a service account with domain-wide delegation, or the client-credentials grant of any other
// endpoint. Tokens are never written anywhere. A token endpoint's refusal becomes an *Error that quotes the
// provider's code (AADSTS7000215, unauthorized_client...) and says what to fix.
//
// It uses golang.org/x/oauth2's clientcredentials and jwt packages for the requests. golang.org/x/oauth2/google
// is not imported (it brings in the cloud metadata client): the few fields of the service account key are read
// by config.ReadServiceAccount. Caching is this package's own, with an injectable clock, so that renewal can be
// tested without waiting for a token to expire.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
	"golang.org/x/oauth2/microsoft"

	"ptrelay/config"
)

// Provider is where tokens come from.
type Provider string

const (
	Microsoft Provider = "microsoft"
	Google    Provider = "google"
	Generic   Provider = "generic"
)

// Default scopes: Exchange Online's SMTP AUTH ("You must use https://outlook.office365.com/.default") and
// Google's mail scope for IMAP, POP and SMTP.
const (
	ScopeMicrosoft = "https://outlook.office365.com/.default"
	ScopeGoogle    = "https://mail.google.com/"
	// GoogleTokenURL is Google's token endpoint for the JWT bearer grant.
	GoogleTokenURL = "https://oauth2.googleapis.com/token"
)

// RenewBefore is how long before its expiry a token is replaced: a login never uses a token in its last minutes
// (Entra tokens live 60 to 90 minutes).
const RenewBefore = 5 * time.Minute

// unknownLifetime is how long a token whose endpoint gave no expires_in is used.
const unknownLifetime = 10 * time.Minute

// Options say where one smart host's tokens come from.
type Options struct {
	Provider Provider
	// TokenURL overrides the provider's endpoint; required for Generic. Microsoft's is built from Tenant.
	TokenURL string
	Tenant   string
	ClientID string
	// Secret reads the client secret (Microsoft, Generic) at each request, so a new secret needs no reload.
	Secret func() (string, error)
	// SecretSource names where the secret comes from, for the fix sentences.
	SecretSource string
	// ServiceAccountFile is Google's service account JSON key; Subject is the user the token acts as (the
	// XOAUTH2 user).
	ServiceAccountFile string
	Subject            string
	Scopes             []string // empty: the provider's default
	// Now is the clock expiry is judged by; nil: time.Now.
	Now func() time.Time
	// HTTPClient makes the requests; nil: one with a 30 s timeout and the environment's proxy.
	HTTPClient *http.Client
}

// Token is an access token and when, by the Source's clock, it expires and is renewed.
type Token struct {
	Value   string
	Expires time.Time
	RenewAt time.Time // from here on, Source.Token fetches a new one; a session logged in with it is not reused
}

// Source hands out one smart host's tokens: the cached one while it is fresh, else a new one from the endpoint.
// It is safe for concurrent use; concurrent callers share one request.
type Source struct {
	o   Options
	mu  sync.Mutex
	tok Token
}

// New returns a Source for o. Nothing is requested until the first Token.
func New(o Options) *Source {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	}
	return &Source{o: o}
}

// Endpoint is the token URL requests go to.
func (s *Source) Endpoint() string { return endpoint(s.o) }

func endpoint(o Options) string {
	switch {
	case o.TokenURL != "":
		return o.TokenURL
	case o.Provider == Microsoft:
		return microsoft.AzureADEndpoint(o.Tenant).TokenURL
	case o.Provider == Google:
		return GoogleTokenURL
	}
	return ""
}

func scopes(o Options) []string {
	if len(o.Scopes) > 0 {
		return o.Scopes
	}
	switch o.Provider {
	case Microsoft:
		return []string{ScopeMicrosoft}
	case Google:
		return []string{ScopeGoogle}
	}
	return nil
}

// Token returns a token that is valid until at least its RenewAt: the cached one, or a new one. An error from the
// endpoint is an *Error.
func (s *Source) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	if s.tok.Value != "" && now.Before(s.tok.RenewAt) {
		return s.tok, nil
	}
	t, err := s.fetch(ctx)
	if err != nil {
		return Token{}, err
	}
	lifetime := unknownLifetime
	if !t.Expiry.IsZero() {
		lifetime = time.Until(t.Expiry) // x/oauth2 computes Expiry from expires_in with the real clock
	}
	renew := lifetime - RenewBefore
	if renew < lifetime/2 {
		renew = lifetime / 2 // a short-lived token is still used for half its life
	}
	s.tok = Token{Value: t.AccessToken, Expires: now.Add(lifetime), RenewAt: now.Add(renew)}
	return s.tok, nil
}

// Invalidate drops the cached token if it is value: the server refused it (revoked, or the rights changed), so
// the next Token fetches a new one.
func (s *Source) Invalidate(value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.Value == value {
		s.tok = Token{}
	}
}

// fetch asks the endpoint for a new token.
func (s *Source) fetch(ctx context.Context) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.o.HTTPClient)
	url := endpoint(s.o)
	var (
		t   *oauth2.Token
		err error
	)
	switch s.o.Provider {
	case Google:
		var sa *config.ServiceAccount
		sa, err = config.ReadServiceAccount(s.o.ServiceAccountFile)
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("service account key %s: %w", s.o.ServiceAccountFile, err),
				Fix: "check service_account_file " + s.o.ServiceAccountFile + ": it must be the service account's JSON key, readable by ptrelay"}
		}
		c := jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
			Subject: s.o.Subject, Scopes: scopes(s.o), TokenURL: url}
		t, err = c.TokenSource(ctx).Token()
	default:
		var secret string
		secret, err = s.o.Secret()
		if err != nil {
			return nil, &Error{Err: err, Fix: "write the client secret into " + s.o.SecretSource}
		}
		c := clientcredentials.Config{ClientID: s.o.ClientID, ClientSecret: secret, TokenURL: url, Scopes: scopes(s.o)}
		t, err = c.Token(ctx)
	}
	if err != nil {
		return nil, endpointError(s.o, url, err)
	}
	if t.AccessToken == "" {
		return nil, &Error{URL: url, Err: errors.New("the answer holds no access_token"),
			Fix: "check token_url: it must be the OAuth2 token endpoint"}
	}
	return t, nil
}
