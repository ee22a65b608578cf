package config

import (
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// The keys whose value is one of a few words have a type each, so that the words are written once, here: the
// validation accepts exactly these (case-sensitive, as the documentation writes them) and the packages that act
// on a value compare it with these constants, never with a string of their own.

// BareNewlines is smtp.bare_newlines: what inbound does with a bare CR or LF in a message.
type BareNewlines string

const (
	BareNewlinesReject    BareNewlines = "reject"    // refuse the message (the SMTP smuggling defence)
	BareNewlinesNormalize BareNewlines = "normalize" // a bare LF ends a line; only CRLF.CRLF ends DATA
)

// Valid reports one of the documented words.
func (b BareNewlines) Valid() bool { return b == BareNewlinesReject || b == BareNewlinesNormalize }

// SmarthostTLS is smarthosts.tls.
type SmarthostTLS string

const (
	SmarthostSTARTTLS SmarthostTLS = "starttls" // STARTTLS required (port 587)
	SmarthostImplicit SmarthostTLS = "implicit" // TLS from the first byte (port 465)
	SmarthostNoTLS    SmarthostTLS = "none"     // plaintext: a server on this machine or the LAN
)

// Valid reports one of the documented words.
func (s SmarthostTLS) Valid() bool {
	return s == SmarthostSTARTTLS || s == SmarthostImplicit || s == SmarthostNoTLS
}

// DeliveryTLS is delivery.tls: TLS for direct delivery to MX hosts.
type DeliveryTLS string

const (
	DeliveryOpportunistic DeliveryTLS = "opportunistic" // STARTTLS when offered, unverified; plaintext otherwise
	DeliveryVerify        DeliveryTLS = "verify"        // STARTTLS required, certificate verified
	DeliveryNoTLS         DeliveryTLS = "none"          // never STARTTLS
)

// Valid reports one of the documented words.
func (d DeliveryTLS) Valid() bool {
	return d == DeliveryOpportunistic || d == DeliveryVerify || d == DeliveryNoTLS
}

// RoutingMode is routing.mode. The empty value means "auto" with a smart host and "direct" without one;
// Config.EffectiveRoutingMode resolves it.
type RoutingMode string

const (
	RoutingDefault   RoutingMode = ""
	RoutingAuto      RoutingMode = "auto"      // the egress verdict decides
	RoutingDirect    RoutingMode = "direct"    // the recipient domain's MX hosts
	RoutingSmarthost RoutingMode = "smarthost" // always the smart host
)

// Valid reports one of the documented words (or the empty default).
func (m RoutingMode) Valid() bool {
	return m == RoutingDefault || m == RoutingAuto || m == RoutingDirect || m == RoutingSmarthost
}

// Via is routing.rules.via: where the mail a rule matches goes: "direct", "smarthost" (the first usable host of
// the list) or "smarthost:NAME" (that host only).
type Via string

const (
	ViaSmarthost Via = "smarthost"
	ViaDirect    Via = "direct"
	// viaSmarthostPrefix starts "smarthost:NAME".
	viaSmarthostPrefix = "smarthost:"
)

// Valid reports one of the documented forms; whether NAME names a host is Validate's to check.
func (v Via) Valid() bool {
	name, pinned := v.SmarthostName()
	return v == ViaSmarthost || v == ViaDirect || pinned && name != ""
}

// Smarthost reports a via that goes through a smart host ("smarthost" or "smarthost:NAME").
func (v Via) Smarthost() bool {
	_, pinned := v.SmarthostName()
	return v == ViaSmarthost || pinned
}

// SmarthostName returns NAME of "smarthost:NAME", and whether v has that form.
func (v Via) SmarthostName() (string, bool) {
	name, ok := strings.CutPrefix(string(v), viaSmarthostPrefix)
	if !ok {
		return "", false
	}
	return name, true
}

// SmarthostAuth is smarthosts.auth: how ptrelay logs in to a smart host.
type SmarthostAuth string

const (
	AuthAuto    SmarthostAuth = "auto"    // PLAIN or LOGIN, whichever the host offers, when username is set
	AuthPlain   SmarthostAuth = "plain"   // AUTH PLAIN (RFC 4616)
	AuthLogin   SmarthostAuth = "login"   // AUTH LOGIN
	AuthXOAUTH2 SmarthostAuth = "xoauth2" // an OAuth2 access token ([smarthosts.oauth2])
	AuthNone    SmarthostAuth = "none"    // no login (a host that authorises by IP address or certificate)
)

// Valid reports one of the documented words.
func (a SmarthostAuth) Valid() bool {
	return a == AuthAuto || a == AuthPlain || a == AuthLogin || a == AuthXOAUTH2 || a == AuthNone
}

// WhenLimited is smarthosts.when_limited: what happens to mail for a host whose sending budget is spent.
type WhenLimited string

const (
	LimitedNext WhenLimited = "next" // the next host of the list takes it
	LimitedWait WhenLimited = "wait" // it waits for this host's window to free
)

// Valid reports one of the documented words.
func (w WhenLimited) Valid() bool { return w == LimitedNext || w == LimitedWait }

// OAuthProvider is smarthosts.oauth2.provider: where access tokens come from.
type OAuthProvider string

const (
	ProviderMicrosoft OAuthProvider = "microsoft" // Entra ID client credentials (Microsoft 365)
	ProviderGoogle    OAuthProvider = "google"    // a service account with domain-wide delegation (JWT bearer)
	ProviderGeneric   OAuthProvider = "generic"   // client credentials at token_url
)

// Valid reports one of the documented words.
func (p OAuthProvider) Valid() bool {
	return p == ProviderMicrosoft || p == ProviderGoogle || p == ProviderGeneric
}

// AutoBool is a setting written "auto", true or false (smarthosts.dkim_safe_headers). It decodes from either a
// TOML string or a TOML boolean (the decoder passes the raw value: see UnmarshalTOML) and prints the same way.
type AutoBool string

const (
	AutoBoolAuto  AutoBool = "auto"
	AutoBoolTrue  AutoBool = "true"
	AutoBoolFalse AutoBool = "false"
)

// Valid reports "auto", true or false (the empty value is "auto").
func (a AutoBool) Valid() bool {
	return a == "" || a == AutoBoolAuto || a == AutoBoolTrue || a == AutoBoolFalse
}

// UnmarshalTOML reads a raw TOML value: true, false or a string. Anything else is kept as written for Validate
// to refuse with the key's name.
func (a *AutoBool) UnmarshalTOML(raw []byte) error {
	var v struct {
		V any `toml:"v"`
	}
	if err := toml.Unmarshal(append([]byte("v = "), raw...), &v); err != nil {
		*a = AutoBool(raw)
		return nil
	}
	switch x := v.V.(type) {
	case bool:
		*a = AutoBoolFalse
		if x {
			*a = AutoBoolTrue
		}
	case string:
		*a = AutoBool(x)
		if x == "true" || x == "false" {
			*a = AutoBool("\"" + x + "\"") // a string "true" is not the boolean: Validate names it
		}
	default:
		*a = AutoBool(raw)
	}
	return nil
}

// MarshalTOML prints true and false bare and "auto" (or what Validate would refuse) as a string.
func (a AutoBool) MarshalTOML() ([]byte, error) {
	switch a {
	case AutoBoolTrue, AutoBoolFalse:
		return []byte(a), nil
	case "":
		return []byte(`"auto"`), nil
	}
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(map[string]string{"v": string(a)}); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(strings.TrimPrefix(b.String(), "v = "))), nil
}

// DANEMode is delivery.dane.
type DANEMode string

const (
	DANEAuto DANEMode = "auto" // DANE while the resolver is trusted (dns.trust_ad) and proves it validates
	DANEOff  DANEMode = "off"
)

// Valid reports one of the documented words.
func (d DANEMode) Valid() bool { return d == DANEAuto || d == DANEOff }

// TLSLevel is delivery.tls_policy.level: Postfix's security level words (smtp_tls_security_level).
type TLSLevel string

const (
	TLSLevelNone     TLSLevel = "none"      // no TLS
	TLSLevelMay      TLSLevel = "may"       // STARTTLS when offered, unverified; MTA-STS and DANE ignored
	TLSLevelEncrypt  TLSLevel = "encrypt"   // STARTTLS required, unverified
	TLSLevelVerify   TLSLevel = "verify"    // STARTTLS required, certificate verified for the MX name
	TLSLevelDANEOnly TLSLevel = "dane-only" // DANE required: an MX host without usable TLSA records is not used
)

// Valid reports one of the documented words.
func (l TLSLevel) Valid() bool {
	switch l {
	case TLSLevelNone, TLSLevelMay, TLSLevelEncrypt, TLSLevelVerify, TLSLevelDANEOnly:
		return true
	}
	return false
}

// TrustAD is dns.trust_ad: whose DNSSEC "authentic data" (AD) bit ptrelay believes.
type TrustAD string

const (
	TrustADLoopback TrustAD = "loopback" // resolvers on this machine (127.0.0.0/8, ::1) only
	TrustADAlways   TrustAD = "always"   // every configured resolver (a validating resolver on a trusted LAN)
	TrustADNever    TrustAD = "never"    // none: DANE stays off
)

// Valid reports one of the documented words.
func (t TrustAD) Valid() bool { return t == TrustADLoopback || t == TrustADAlways || t == TrustADNever }
