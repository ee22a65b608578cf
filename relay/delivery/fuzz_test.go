package delivery

import (
	"net/textproto"
	"testing"
)

// FuzzClassify: reply lines from remote servers are untrusted. Classifying them at any stage must not panic, and
// an enhanced code is only recorded when its class agrees with the basic code (smtpstatus.ParseReply), or
// with the deferral a refused login becomes. What a smart host's reply means for the host (smarthostClass)
// never turns a success into a failure, and only a permanent reply refuses a sender.
func FuzzClassify(f *testing.F) {
	f.Add(250, "2.0.0 Ok: queued as 4F2C")
	f.Add(550, "5.1.1 <x@y>: Recipient address rejected\n5.1.1 second line")
	f.Add(451, "4.7.1 greylisted, try again")
	f.Add(421, "")
	f.Add(554, "9.9.9 nonsense")
	f.Add(550, "5.4.5 Daily SMTP relay limit exceeded for user")
	f.Add(454, "Throttling failure: Maximum sending rate exceeded.")
	f.Add(554, "5.2.252 SendAsDenied; relay@contoso.com not allowed to send as ceo@contoso.com")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		err := &textproto.Error{Code: code, Msg: msg}
		for _, st := range []stage{stGreeting, stEHLO, stTLS, stAuth, stMail, stRcpt, stData} {
			d := classify(st, err, where{opportunisticTLS: true})
			class := code / 100
			if st == stAuth {
				class = 4 // a refused login defers, recorded as temporary like Postfix's dsn=4.x.x
			}
			if e := d.Status.Enhanced; e[0] != 0 && e[0] != class {
				t.Fatalf("%s: enhanced %v kept for code %d", st, e, code)
			}
			if d.Status.Code != code {
				t.Fatalf("%s: code %d recorded as %d", st, code, d.Status.Code)
			}
			switch c := smarthostClass(st, d.Status); {
			case class == 2 && c != classRecipient:
				t.Fatalf("%s: a %d success judged %s", st, code, c)
			case c == classSender && class != 5:
				t.Fatalf("%s: a %d refuses the sender", st, code)
			}
		}
	})
}
