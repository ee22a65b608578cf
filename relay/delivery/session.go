package delivery

import (
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
}
