package route

import (
	"strings"
	"testing"
)

// Real receiver texts from research/peers.md §4.
func TestPolicyRefusal(t *testing.T) {
	cases := []struct {
		code     int
		enhanced string
		text     string
		reason   string // "" = not a policy refusal
	}{
		{550, "5.7.25", "[192.0.2.1] The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP. As a policy, Gmail does not accept messages from IPs with missing PTR records.", "no PTR / FCrDNS"},
		{550, "5.7.1", "[192.0.2.1] The IP you're using to send mail is not authorized to send email directly to our servers. Please use the SMTP relay at your service provider instead. https://support.google.com/mail/?p=NotAuthorizedError", "dynamic IP (PBL)"},
		{550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS3130). [x.prod.protection.outlook.com]", "blocklist"},
		{550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", "blocklist"},
		{550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/", "blocklist"},
		{553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes", "blocklist"},
		{553, "", "Mail from 192.0.2.1 not allowed - 5.7.1 [BL23] Connections not accepted from IP addresses on Spamhaus XBL", "blocklist"},
		{554, "5.7.1", "Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org", "blocklist"},
		{550, "", "DY-001 (x) Unfortunately, messages from 192.0.2.1 weren't sent. Hotmail does not relay dynamically-assigned IP ranges.", "dynamic IP (PBL)"},
		{554, "", "Dialup/transient IP not allowed. Use a mailgateway or contact toda@rx.t-online.de if obsolete. (DIAL)", "dynamic IP (PBL)"},
		{450, "4.7.1", "Client host rejected: cannot find your hostname, [192.0.2.1]", "no PTR / FCrDNS"},
		{550, "", "IP address does not properly resolve for reverse DNS lookup", "no PTR / FCrDNS"},
		// Not ours to reroute: the sender domain's authentication, or the recipient.
		{550, "5.7.26", "This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", ""},
		{550, "5.7.1", "Unauthenticated email from example.com is not accepted due to domain's DMARC policy.", ""},
		{550, "5.7.9", "This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.", ""},
		{550, "5.1.1", "The email account that you tried to reach does not exist.", ""},
		{552, "5.2.2", "The email account that you tried to reach is over quota.", ""},
		{250, "2.0.0", "ok, listed in spamhaus? no", ""},
	}
	for _, c := range cases {
		r, ok := PolicyRefusal(c.code, c.enhanced, c.text)
		if (c.reason != "") != ok || r.Reason != c.reason {
			t.Errorf("PolicyRefusal(%d %s %q) = %q, %v; want %q", c.code, c.enhanced, c.text, r.Reason, ok, c.reason)
		}
		if ok && r.Fix == "" {
			t.Errorf("no fix for %q", c.reason)
		}
	}
}

// FuzzPolicyRefusal: remote reply texts are untrusted; matching must never panic and must never reroute a
// success or an authentication refusal.
func FuzzPolicyRefusal(f *testing.F) {
	f.Add(550, "5.7.25", "The IP address sending this message does not have a PTR record setup")
	f.Add(550, "5.7.26", "unauthenticated, SPF did not pass; listed in spamhaus")
	f.Add(250, "", "blocked using zen.spamhaus.org")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		r, ok := PolicyRefusal(code, enhanced, text)
		if ok && (code/100 != 4 && code/100 != 5 || r.Reason == "" || r.Fix == "") {
			t.Fatalf("PolicyRefusal(%d, %q, %q) = %+v", code, enhanced, text, r)
		}
		if ok && authRefusal.MatchString(strings.ToLower(enhanced+" "+text)) {
			t.Fatalf("rerouted an authentication refusal: %q %q", enhanced, text)
		}
	})
}
