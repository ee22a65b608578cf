package smtpclient

// XOAUTH2 is the SASL mechanism Microsoft 365 and Google accept for SMTP AUTH with an OAuth2 access token
// (Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth"; Google, "OAuth 2.0 Mechanism").
// go-sasl has no client for it, and its OAUTHBEARER (RFC 7628) is not accepted by Microsoft, so it is written
// here: the initial response is
//
//	user=<mailbox>^Aauth=Bearer <token>^A^A      (^A is the byte 0x01)
//
// sent inline with AUTH XOAUTH2. A refused token gets a 334 with a base64 JSON error (Google), which the client
// answers with an empty line so that the server ends with its 535; Microsoft answers 535 at once.

const mechXOAUTH2 = "XOAUTH2"

type xoauth2Client struct{ user, token string }

func (c xoauth2Client) Start() (string, []byte, error) {
	return mechXOAUTH2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next answers the server's error challenge with an empty response: the server then sends the final 535.
func (c xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }
