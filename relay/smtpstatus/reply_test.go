package smtpstatus

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// replyCases are replies as servers send them (CRLF added by the helpers), with the Status they must read as.
var replyCases = []struct {
	name string
	wire string
	want Status
}{
	{"one line", "250 2.0.0 Ok: queued as 4F2C", Status{250, Enhanced{2, 0, 0}, "Ok: queued as 4F2C"}},
	{"no enhanced code", "451 greylisted, try later", Status{451, Enhanced{}, "greylisted, try later"}},
	{"success without an enhanced code", "250 Ok", Status{250, Enhanced{}, "Ok"}},
	{"code only", "421 ", Status{421, Enhanced{}, ""}},
	{"enhanced code only", "554 5.7.1", Status{554, Enhanced{5, 7, 1}, ""}},
	{"Gmail multi-line, the code on every line",
		"550-5.7.25 [192.0.2.1] The IP address sending this message does not have a\n" +
			"550-5.7.25 PTR record setup.\n550 5.7.25  https://support.google.com/mail/answer/81126 - gsmtp",
		Status{550, Enhanced{5, 7, 25}, "[192.0.2.1] The IP address sending this message does not have a PTR record setup.  https://support.google.com/mail/answer/81126 - gsmtp"}},
	{"multi-line, the code on the first line only", "550-5.1.1 No such user\n550 here",
		Status{550, Enhanced{5, 1, 1}, "No such user here"}},
	{"multi-line, another code on a later line", "550-5.7.1 Refused\n550 5.7.26 unauthenticated",
		Status{550, Enhanced{5, 7, 1}, "Refused 5.7.26 unauthenticated"}},
	{"multi-line, an empty line", "220-mx.example ESMTP\n220-\n220 ready",
		Status{220, Enhanced{}, "mx.example ESMTP  ready"}},
	{"multi-line, a bare repeated code", "421-4.3.2 closing\n421 4.3.2",
		Status{421, Enhanced{4, 3, 2}, "closing 4.3.2"}},
	{"class disagrees with the code", "250 5.0.0 odd", Status{250, Enhanced{}, "5.0.0 odd"}},
	{"class disagrees, multi-line", "451-5.7.1 odd\n451 5.7.1 reply", Status{451, Enhanced{}, "5.7.1 odd 5.7.1 reply"}},
	{"out of range", "550 5.1000.1 odd", Status{550, Enhanced{}, "5.1000.1 odd"}},
	{"not a class", "554 9.9.9 nonsense", Status{554, Enhanced{}, "9.9.9 nonsense"}},
	{"not a code", "550 5.7 text", Status{550, Enhanced{}, "5.7 text"}},
}

// TestParseReply reads each case from its textproto form.
func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) {
			code, text := textprotoForm(t, c.wire)
			if got := ParseReply(code, text); got != c.want {
				t.Errorf("ParseReply(%d, %q)\n got %#v\nwant %#v", code, text, got, c.want)
			}
		})
	}
}

// TestReplyReadersAgree: the same reply reads the same whether go-smtp's client received it (MAIL, RCPT, DATA,
// the greeting) or net/textproto did (the reply to STARTTLS), which is what "one parser" means.
func TestReplyReadersAgree(t *testing.T) {
	for _, c := range replyCases {
		if c.want.Code/100 == 2 {
			continue // go-smtp reports only failures as *SMTPError
		}
		t.Run(c.name, func(t *testing.T) {
			viaSMTP, ok := FromError(goSMTPGreeting(t, c.wire))
			if !ok {
				t.Fatal("go-smtp's error is not a reply")
			}
			viaTextproto, ok := FromError(textprotoRead(t, c.wire, 220))
			if !ok {
				t.Fatal("textproto's error is not a reply")
			}
			if viaSMTP != c.want || viaTextproto != c.want {
				t.Errorf("go-smtp read %#v\ntextproto read %#v\nwant %#v", viaSMTP, viaTextproto, c.want)
			}
		})
	}
}

func TestFromSMTPError(t *testing.T) {
	st := FromSMTPError(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 25}, Message: "no PTR"})
	if st != (Status{550, Enhanced{5, 7, 25}, "no PTR"}) {
		t.Errorf("got %+v", st)
	}
	if st := FromSMTPError(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.NoEnhancedCode}); st.Enhanced != (Enhanced{}) {
		t.Errorf("no enhanced code became %v", st.Enhanced)
	}
	// go-smtp does not check the class: a mismatched code stays in the text.
	st = FromSMTPError(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "a\nb"})
	if st != (Status{451, Enhanced{}, "5.7.1 a 5.7.1 b"}) {
		t.Errorf("class mismatch: got %+v", st)
	}
}

func TestFromError(t *testing.T) {
	wrapped := fmt.Errorf("rcpt: %w", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "too many"})
	if st, ok := FromError(wrapped); !ok || st != (Status{452, Enhanced{4, 5, 3}, "too many"}) {
		t.Errorf("wrapped *smtp.SMTPError: %+v %v", st, ok)
	}
	if st, ok := FromError(&textproto.Error{Code: 454, Msg: "4.7.0 TLS not available"}); !ok || st != (Status{454, Enhanced{4, 7, 0}, "TLS not available"}) {
		t.Errorf("*textproto.Error: %+v %v", st, ok)
	}
	if _, ok := FromError(errors.New("connection reset by peer")); ok || IsReply(errors.New("x")) {
		t.Error("a network error read as a reply")
	}
}

// FuzzParseReply: reply text comes from remote servers. Parsing must not panic, keeps one line, and keeps an
// enhanced code only when its class agrees with the basic code.
func FuzzParseReply(f *testing.F) {
	for _, c := range replyCases {
		code, text := textprotoForm(f, c.wire)
		f.Add(code, text)
	}
	f.Fuzz(func(t *testing.T, code int, text string) {
		st := ParseReply(code, text)
		if st.Code != code || strings.Contains(st.Text, "\n") {
			t.Fatalf("ParseReply(%d, %q) = %+v", code, text, st)
		}
		if st.Enhanced != (Enhanced{}) && st.Enhanced[0] != code/100 {
			t.Fatalf("enhanced %v kept for code %d", st.Enhanced, code)
		}
		if st.Enhanced == (Enhanced{}) && st.Text != strings.ReplaceAll(text, "\n", " ") {
			t.Fatalf("text changed without an enhanced code: %q -> %q", text, st.Text)
		}
	})
}

// crlf turns a "\n"-separated reply into wire form.
func crlf(wire string) string { return strings.ReplaceAll(wire, "\n", "\r\n") + "\r\n" }

// textprotoForm is what net/textproto makes of a reply: its code and joined text.
func textprotoForm(t testing.TB, wire string) (int, string) {
	t.Helper()
	code, text, err := textproto.NewReader(bufio.NewReader(strings.NewReader(crlf(wire)))).ReadResponse(0)
	if err != nil {
		t.Fatalf("textproto cannot read %q: %v", wire, err)
	}
	return code, text
}

// textprotoRead reads the reply expecting code, as a reply read outside go-smtp is.
func textprotoRead(t *testing.T, wire string, expect int) error {
	t.Helper()
	_, _, err := textproto.NewReader(bufio.NewReader(strings.NewReader(crlf(wire)))).ReadResponse(expect)
	if err == nil {
		t.Fatalf("textproto accepted %q", wire)
	}
	return err
}

// goSMTPGreeting has go-smtp's client read the reply as a server's greeting.
func goSMTPGreeting(t *testing.T, wire string) error {
	t.Helper()
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		_, _ = server.Write([]byte(crlf(wire)))
		server.Close()
	}()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	c := smtp.NewClient(client)
	defer c.Close()
	err := c.Hello("ptrelay.test")
	if err == nil {
		t.Fatalf("go-smtp accepted the greeting %q", wire)
	}
	return err
}
