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
