// Package oauthtest holds test helpers for OAuth2 smart hosts: a token endpoint on loopback (httptest) that
// answers the client-credentials grant and verifies the RS256 assertion of the JWT bearer grant, a Google-style
// service account key written to a file, and the server side of SASL XOAUTH2 for go-smtp test servers. It is
// imported by _test.go files only.
package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TokenServerOptions say what the endpoint accepts.
type TokenServerOptions struct {
	// ClientID and Secret are what the client-credentials grant must present (form or Basic auth).
	ClientID, Secret string
	// Key, Email and Subject are what the JWT bearer grant's assertion must carry: signed by Key (RS256), iss =
	// Email, sub = Subject.
	Key     *rsa.PublicKey
	Email   string
	Subject string
	// Scope must be among the requested scopes.
	Scope string
	// ExpiresIn is the tokens' lifetime in seconds; 0 means 3600.
	ExpiresIn int
}

// TokenServer is a token endpoint on loopback. Tokens are "tok-1", "tok-2", ...; each is valid until revoked.
type TokenServer struct {
	URL string
	srv *httptest.Server
	o   TokenServerOptions

	mu       sync.Mutex
	issued   int
	valid    map[string]bool
	requests int
	refusal  string // when set, every request is refused with this RFC 6749 error body
	status   int
	lastErr  string // why the last request was refused, for test failures
}

// StartTokenServer starts the endpoint for the length of the test.
func StartTokenServer(t testing.TB, o TokenServerOptions) *TokenServer {
	t.Helper()
	if o.ExpiresIn == 0 {
		o.ExpiresIn = 3600
	}
	s := &TokenServer{o: o, valid: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/token"
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the endpoint: requests then fail to connect (the endpoint is down).
func (s *TokenServer) Close() { s.srv.Close() }

// Refuse makes every request fail with HTTP status and the JSON body {"error": code, "error_description":
// desc} (an empty object without a code); status 0 answers normally again.
func (s *TokenServer) Refuse(status int, code, desc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
	s.refusal = ""
	if status != 0 {
		s.refusal = "{}"
	}
	if code != "" {
		b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
		s.refusal = string(b)
	}
}

// Valid reports whether tok was issued and not revoked: the check an XOAUTH2 server makes.
func (s *TokenServer) Valid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valid[tok]
}

// Revoke makes every token issued so far invalid.
func (s *TokenServer) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.valid = map[string]bool{}
}

// Requests counts the requests that got a token.
func (s *TokenServer) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// LastRefusal says why the last refused request was refused ("" when none was).
func (s *TokenServer) LastRefusal() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	refusal, status := s.refusal, s.status
	s.mu.Unlock()
	refuse := func(status int, code, why string) {
		s.mu.Lock()
		s.lastErr = why
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		b, _ := json.Marshal(map[string]string{"error": code, "error_description": why})
		_, _ = w.Write(b)
	}
	if refusal != "" {
		s.mu.Lock()
		s.lastErr = refusal
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(refusal))
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		refuse(http.StatusBadRequest, "invalid_request", "POST a form")
		return
	}
	scope := r.PostForm.Get("scope")
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != s.o.ClientID || secret != s.o.Secret {
			refuse(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 0")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		claims, err := s.verifyJWT(r.PostForm.Get("assertion"))
		if err != nil {
			refuse(http.StatusBadRequest, "invalid_grant", err.Error())
			return
		}
		if claims.Sub != s.o.Subject {
			refuse(http.StatusUnauthorized, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
			return
		}
		scope = claims.Scope
	default:
		refuse(http.StatusBadRequest, "unsupported_grant_type", r.PostForm.Get("grant_type"))
		return
	}
	if s.o.Scope != "" && !containsField(scope, s.o.Scope) {
		refuse(http.StatusBadRequest, "invalid_scope", "AADSTS70011: The provided value for the input parameter 'scope' is not valid: "+scope)
		return
	}
	s.mu.Lock()
	s.issued++
	s.requests++
	tok := fmt.Sprintf("tok-%d", s.issued)
	s.valid[tok] = true
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": s.o.ExpiresIn, "access_token": tok})
}

func containsField(list, want string) bool {
	for _, f := range strings.Fields(list) {
		if f == want {
			return true
		}
	}
	return false
}

type claims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// verifyJWT checks an RS256 assertion against the service account's public key and its claims against the
// endpoint: what Google's endpoint does before it looks at the delegation.
func (s *TokenServer) verifyJWT(assertion string) (*claims, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("the assertion is not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return nil, fmt.Errorf("the assertion's header is not RS256: %+v %v", hdr, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("the signature is not base64url: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if s.o.Key == nil || rsa.VerifyPKCS1v15(s.o.Key, crypto.SHA256, sum[:], sig) != nil {
		return nil, fmt.Errorf("invalid JWT signature")
	}
	var c claims
	if err := decodeSegment(parts[1], &c); err != nil {
		return nil, fmt.Errorf("the claims do not decode: %v", err)
	}
	now := time.Now().Unix()
	switch {
	case c.Iss != s.o.Email:
		return nil, fmt.Errorf("iss %q is not the service account %q", c.Iss, s.o.Email)
	case c.Aud != s.URL:
		return nil, fmt.Errorf("aud %q is not the token URL %q", c.Aud, s.URL)
	case c.Exp < now || c.Iat > now+60 || c.Exp-c.Iat > 3600:
		return nil, fmt.Errorf("invalid JWT: the token must be short-lived (60 minutes) and in a reasonable timeframe")
	}
	return &c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ServiceAccount is a service account key written to a file as Google's console hands it out.
type ServiceAccount struct {
	Path  string
	Email string
	Key   *rsa.PrivateKey
}

// WriteServiceAccount writes a service account JSON key with a new RSA key into dir.
func WriteServiceAccount(t testing.TB, dir string) ServiceAccount {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa := ServiceAccount{Path: filepath.Join(dir, "service-account.json"), Email: "relay@ptrelay-test.iam.gserviceaccount.com", Key: key}
	doc := map[string]string{
		"type": "service_account", "project_id": "ptrelay-test", "private_key_id": "0123456789abcdef",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": sa.Email, "client_id": "100000000000000000001", "token_uri": "https://oauth2.googleapis.com/token",
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(sa.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return sa
}

// XOAUTH2Server is the server side of SASL XOAUTH2 for a go-smtp test server's AuthSession. check judges the
// user and token; a refusal answers as Google does: a 334 with a base64 JSON error, then, after the client's
// empty line, 535 5.7.8 (an *smtp.SMTPError: a plain error would make go-smtp answer a temporary 454).
func XOAUTH2Server(check func(user, token string) bool) sasl.Server {
	return &xoauth2Server{check: check}
}

type xoauth2Server struct {
	check  func(user, token string) bool
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
			Message: "Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials"}
	}
	if resp == nil {
		return []byte{}, false, nil // no initial response: ask for it
	}
	user, tok, ok := parseXOAUTH2(string(resp))
	if ok && x.check(user, tok) {
		return nil, true, nil
	}
	x.failed = true
	return []byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`), false, nil
}

// parseXOAUTH2 reads "user=U\x01auth=Bearer T\x01\x01".
func parseXOAUTH2(s string) (user, token string, ok bool) {
	if !strings.HasSuffix(s, "\x01\x01") {
		return "", "", false
	}
	for _, f := range strings.Split(strings.TrimSuffix(s, "\x01\x01"), "\x01") {
		switch {
		case strings.HasPrefix(f, "user="):
			user = strings.TrimPrefix(f, "user=")
		case strings.HasPrefix(f, "auth=Bearer "):
			token = strings.TrimPrefix(f, "auth=Bearer ")
		}
	}
	return user, token, user != "" && token != ""
}
