package smtpstatus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestNamedStatuses walks every named reply: the enhanced class agrees with the basic code, and each is the
// reply the documentation promises (docs/exchange.md).
func TestNamedStatuses(t *testing.T) {
	cases := []struct {
		name string
		st   Status
		want string // "code enhanced"
	}{
		{"Queued", Queued, "250 2.0.0"},
		{"RelayDenied", RelayDenied, "554 5.7.1"},
		{"MessageTooBig", MessageTooBig, "552 5.3.4"},
		{"TooManyRecipients", TooManyRecipients, "452 4.5.3"},
		{"StorageFailure", StorageFailure, "451 4.3.0"},
		{"BareNewline", BareNewline, "550 5.6.0"},
		{"AuthFailed", AuthFailed, "535 5.7.8"},
		{"AuthRequired", AuthRequired, "530 5.7.0"},
		{"TLSRequiredForAuth", TLSRequiredForAuth, "538 5.7.11"},
		{"BadAddress", BadAddress, "501 5.1.3"},
		{"BadSender", BadSender, "501 5.1.7"},
		{"ShuttingDown", ShuttingDown, "421 4.3.2"},
		{"TooManyConnections", TooManyConnections, "421 4.7.0"},
		{"IdleTimeout", IdleTimeout, "421 4.4.2"},
	}
	for _, c := range cases {
		if got := fmt.Sprintf("%d %s", c.st.Code, c.st.Enhanced); got != c.want {
			t.Errorf("%s is %s, want %s", c.name, got, c.want)
		}
		if c.st.Enhanced[0] != c.st.Code/100 {
			t.Errorf("%s: enhanced class %d disagrees with code %d", c.name, c.st.Enhanced[0], c.st.Code)
		}
		if c.st.Temporary() != (c.st.Code/100 == 4) || c.st.Permanent() != (c.st.Code/100 == 5) {
			t.Errorf("%s: Temporary/Permanent disagree with code %d", c.name, c.st.Code)
		}
	}
}

func TestNew_RefusesDisagreeingClass(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New(451, 5.3.0) did not panic")
		}
	}()
	New(451, Enhanced{5, 3, 0}, "x")
}

func TestParseEnhanced(t *testing.T) {
	for in, ok := range map[string]bool{"4.7.1": true, "5.1.10": true, "2.0.0": true, "3.0.0": false, "4.7": false,
		"4.x.1": false, "4.7.1.2": false, "": false, "5.1000.1": false} {
		if _, got := ParseEnhanced(in); got != ok {
			t.Errorf("ParseEnhanced(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

func TestString(t *testing.T) {
	for _, c := range []struct {
		st   Status
		want string
	}{
		{Status{Code: 451, Enhanced: Enhanced{4, 3, 0}, Text: "later"}, "451 4.3.0 later"},
		{Status{Code: 250, Text: "ok"}, "250 ok"},
		{Status{Enhanced: Enhanced{4, 4, 1}, Text: "connection refused"}, "4.4.1 connection refused"},
	} {
		if got := c.st.String(); got != c.want {
			t.Errorf("%+v renders %q, want %q", c.st, got, c.want)
		}
	}
}

// TestToSMTP: our errors become their status, go-smtp's pass through, and anything else is a generic 451 4.3.0
// that never shows the cause to the client.
func TestToSMTP(t *testing.T) {
	if ToSMTP(nil) != nil {
		t.Error("ToSMTP(nil) is not nil")
	}
	wrapped := fmt.Errorf("commit: %w", Errorf(StorageFailure, "queue.commit", errors.New("disk full")))
	var se *smtp.SMTPError
	if !errors.As(ToSMTP(wrapped), &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Errorf("a wrapped *Error became %v", ToSMTP(wrapped))
	}
	own := &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "too big"}
	if ToSMTP(own) != own {
		t.Error("a *smtp.SMTPError did not pass unchanged")
	}
	secret := errors.New("open /var/lib/ptrelay/queue.db: input/output error")
	if !errors.As(ToSMTP(secret), &se) || se.Code != 451 || se.Message == secret.Error() {
		t.Errorf("an unknown error became %v (the cause must not reach the client)", ToSMTP(secret))
	}
}
