package config

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

// SmarthostTLS is smarthost.tls.
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

// Via is routing.rules.via: where the mail a rule matches goes.
type Via string

const (
	ViaSmarthost Via = "smarthost"
	ViaDirect    Via = "direct"
)

// Valid reports one of the documented words.
func (v Via) Valid() bool { return v == ViaSmarthost || v == ViaDirect }

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
