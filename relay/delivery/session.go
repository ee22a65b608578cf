package delivery

import (
	"strings"
	"time"

	"ptrelay/relay/smtpclient"
)

// stage is the step of the dialogue (or of the attempt around it) an error happened at; classification depends
// on it (outcome.go). The session steps are smtpclient's.
type stage = smtpclient.Stage

const (
	stDNS      stage = "dns"
	stConnect        = smtpclient.StageConnect
	stGreeting       = smtpclient.StageGreeting
	stEHLO           = smtpclient.StageEHLO
	stTLS            = smtpclient.StageTLS
	stAuth     stage = "auth"
	stMail     stage = "mail"
	stRcpt     stage = "rcpt"
	stData     stage = "data"
	stQueue    stage = "queue" // reading our own stored message
	stAbort    stage = "abort" // shutdown
)

// session is one open SMTP session of a hop, ready for MAIL, with the candidate it was opened with.
type session struct {
	*smtpclient.Session
	cand candidate
	used int // transactions completed on it
	// tokenRenewAt: the session logged in with an OAuth2 token that is renewed then; it is not reused after it.
	tokenRenewAt time.Time
}

// Relay is Postfix's relay=host[ip]:port, with the smart host's name in front: relay=NAME/host[ip]:port.
func (ss *session) Relay() string { return smarthostRelay(ss.cand.smarthost, ss.Session.Relay()) }

// smarthostRelay puts a smart host's name in front of a relay.
func smarthostRelay(h *Smarthost, relay string) string {
	if h == nil || relay == "" || relay == "none" {
		return relay
	}
	return h.Name + "/" + relay
}

// smarthostOf returns NAME of a relay written NAME/host[ip]:port ("" for any other).
func smarthostOf(relay string) string {
	name, _, ok := strings.Cut(relay, "/")
	if !ok {
		return ""
	}
	return name
}
