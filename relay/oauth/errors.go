package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
)

// Error is a failure to get a token: the endpoint refused (Code is its RFC 6749 error code, Description its
// words, AADSTS the Entra ID code inside them) or could not be reached, or the secret or key could not be read
// (URL empty). Fix says what the admin should do.
type Error struct {
	URL         string
	Status      int    // the HTTP status of a refusal; 0 when no answer came
	Code        string // "invalid_client", "unauthorized_client", ...
	Description string
	AADSTS      string // "AADSTS7000215", from Description
	Err         error
	Fix         string
}

// Error is what logs, status and alerts quote: "token endpoint: invalid_client AADSTS7000215: Invalid client
// secret provided..." (the description is cut at its first line; Entra appends trace IDs on more).
func (e *Error) Error() string {
	switch {
	case e.Code != "" || e.Description != "":
		s := "token endpoint: " + e.Code
		if e.Description != "" {
			s = strings.TrimSpace(s + " " + firstLine(e.Description))
		}
		return s
	case e.Status != 0:
		return fmt.Sprintf("token endpoint %s answered HTTP %d", e.URL, e.Status)
	case e.URL == "":
		return e.Err.Error() // a local problem: the secret or the key file
	}
	return "token endpoint " + e.URL + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Refused reports an answer from the endpoint that refused the request (as opposed to no answer, or a server
// error): the configuration or the provider's side must change before a retry can help.
func (e *Error) Refused() bool { return e.Code != "" || e.Status >= 400 && e.Status < 500 }

var aadsts = regexp.MustCompile(`AADSTS\d+`)

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// endpointError turns x/oauth2's error into an *Error with the fix for the provider's code.
func endpointError(o Options, url string, err error) *Error {
	e := &Error{URL: url, Err: err}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		e.Code, e.Description = re.ErrorCode, re.ErrorDescription
		if e.Code == "" {
			// The JWT bearer path does not parse the RFC 6749 error body; read it here.
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				e.Code, e.Description = body.Error, body.Description
			}
		}
		e.AADSTS = aadsts.FindString(e.Description)
	}
	e.Fix = fix(o, e)
	return e
}

// fix is the sentence for the admin, by the provider's code.
func fix(o Options, e *Error) string {
	secret := o.SecretSource
	if secret == "" {
		secret = "client_secret_file"
	}
	switch e.AADSTS {
	case "AADSTS7000215":
		return "the client secret is wrong: write the secret's Value (shown once when it was created, not its Secret ID) into " + secret
	case "AADSTS7000222":
		return "the client secret has expired: create a new one (Entra ID, App registrations, your app, Certificates & secrets), write it into " + secret + " and set client_secret_expires to its new date"
	case "AADSTS700016":
		return "the tenant has no application with this client_id: copy the Application (client) ID of the app registration, and check tenant"
	case "AADSTS90002", "AADSTS900023":
		return "the tenant is not found: write the Directory (tenant) ID or a verified domain of your tenant in tenant"
	case "AADSTS70011", "AADSTS1002012":
		return "the scope is not accepted: leave scopes empty, so ptrelay asks for " + ScopeMicrosoft
	case "AADSTS7000112", "AADSTS7000113":
		return "the application is disabled in the tenant: enable it (Entra ID, Enterprise applications, your app, Properties)"
	}
	switch e.Code {
	case "unauthorized_client":
		if o.Provider == Google {
			return "domain-wide delegation is not granted to this service account: in the Admin console, Security, API controls, Domain-wide delegation, add the service account's client ID with the scope " + ScopeGoogle
		}
		return "the application may not use the client-credentials grant: allow it at the provider, or check client_id"
	case "invalid_grant":
		if o.Provider == Google {
			return "Google refused the signed request: check that username is a user of the Workspace domain, that the service account key was not deleted, and that this machine's clock is right"
		}
		return "the endpoint refused the grant: check client_id, the secret and the scopes"
	case "invalid_client":
		return "the endpoint does not accept client_id with this secret: check client_id, and the secret in " + secret
	case "invalid_scope":
		return "the scope is not accepted: check scopes (empty means the provider's default)"
	case "":
	default:
		return "the token endpoint refused the request (" + e.Code + "): check the [smarthosts.oauth2] settings of this host"
	}
	switch {
	case e.Status >= 500:
		return "the token endpoint has trouble (HTTP " + fmt.Sprint(e.Status) + "): mail waits and is retried; check the provider's status page if it lasts"
	case e.Status != 0:
		return "the token endpoint refused the request (HTTP " + fmt.Sprint(e.Status) + "): check token_url and the [smarthosts.oauth2] settings"
	}
	return "the token endpoint " + e.URL + " cannot be reached: check DNS, the firewall and any HTTP proxy (HTTPS_PROXY) for this machine"
}
