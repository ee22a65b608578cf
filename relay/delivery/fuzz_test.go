package delivery

import (
	"errors"
	"net/textproto"
	"testing"

	"github.com/emersion/go-smtp"
)

// FuzzReply: reply lines from remote servers are untrusted. Parsing them into statuses must not panic, and an
// enhanced code is only kept when its class agrees with the basic code.
func FuzzReply(f *testing.F) {
	f.Add(250, "2.0.0 Ok: queued as 4F2C")
	f.Add(550, "5.1.1 <x@y>: Recipient address rejected\n5.1.1 second line")
	f.Add(451, "4.7.1 greylisted, try again")
	f.Add(421, "")
	f.Add(554, "9.9.9 nonsense")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		err := replyErr(&textproto.Error{Code: code, Msg: msg})
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("replyErr returned %T", err)
		}
		st := fromSMTP(se)
		if st.Enhanced[0] != 0 && st.Enhanced[0] != code/100 {
			t.Fatalf("enhanced %v kept for code %d", st.Enhanced, code)
		}
		ok := okStatus(msg)
		if ok.Code != 250 || (ok.Enhanced[0] != 0 && ok.Enhanced[0] != 2) {
			t.Fatalf("okStatus(%q) = %+v", msg, ok)
		}
		_ = classify(stRcpt, "direct", true, false, err)
	})
}
