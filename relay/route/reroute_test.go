package route

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/relay/smtpstatus"
)

// wire parses a raw reply, as a receiver sends it (CRLF-terminated lines, "550-" continuations), with go-smtp's
// client and smtpstatus.FromError, the way delivery receives and converts it: the greeting of a peer that says
// only this. Multi-line replies are tested in the form the table really sees.
func wire(t *testing.T, raw string) smtpstatus.Status {
	t.Helper()
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		_, _ = server.Write([]byte(strings.ReplaceAll(strings.TrimSuffix(raw, "\n"), "\n", "\r\n") + "\r\n"))
		server.Close()
	}()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	c := smtp.NewClient(client)
	defer c.Close()
	err := c.Hello("ptrelay.test")
	st, ok := smtpstatus.FromError(err)
	if !ok {
		t.Fatalf("go-smtp did not parse %q as a reply: %v", raw, err)
	}
	return st
}

// line is a one-line reply as the production parser reads it.
func line(code int, enhanced, text string) smtpstatus.Status {
	if enhanced != "" {
		text = enhanced + " " + text
	}
	return smtpstatus.ParseReply(code, text)
}

type classifyCase struct {
	name   string
	st     smtpstatus.Status
	kind   Kind
	reason string
}

// Real receiver replies, as quoted in receivers' postmaster pages and in bounce reports posted to public forums
// and issue trackers unless a source is named (IPs and hosts elided to the
// documentation ranges, as in the sources).
func classifyCases(t *testing.T) []classifyCase {
	return []classifyCase{
		// Google.
		{"gmail 5.7.25 multi-line", wire(t, `550-5.7.25 [192.0.2.1] The IP address sending this message does not have a
550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not
550-5.7.25 point to the sending IP. As a policy, Gmail does not accept messages
550-5.7.25 from IPs with missing PTR records. For more information, go to
550 5.7.25  https://support.google.com/mail/answer/81126#ip-rdns x1si12.25 - gsmtp`), Reputation, "ptr"},
		{"gmail 5.7.25 newer wording", line(550, "5.7.25", "The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not match the sending IP. https://support.google.com/a?p=sender-guidelines-ip"), Reputation, "ptr"},
		{"gmail 5.7.25 IPv6", line(550, "5.7.25", "[2001:db8::1] The IP address sending this message does not have a PTR record setup. As a policy, Gmail does not accept messages from IPs with missing PTR records."), Reputation, "ptr"},
		{"gmail 5.7.1 IPv6 guidelines multi-line", wire(t, `550-5.7.1 [2001:db8::1] Our system has detected that this message does not
550-5.7.1 meet IPv6 sending guidelines regarding PTR records and
550-5.7.1 authentication. Please review
550 5.7.1  https://support.google.com/mail/?p=IPv6AuthError z1si1 - gsmtp`), Reputation, "ptr"},
		{"gmail 5.7.1 IPv6 older link", line(550, "5.7.1", "[2001:db8::1] Our system has detected that this message does not meet IPv6 sending guidelines regarding PTR records and authentication. https://support.google.com/mail/?p=ipv6_authentication_error"), Reputation, "ptr"},
		{"gmail NotAuthorizedError multi-line", wire(t, `550-5.7.1 [192.0.2.1] The IP you're using to send mail is not authorized to
550-5.7.1 send email directly to our servers. Please use the SMTP relay at your
550-5.7.1 service provider instead. For more information, go to
550 5.7.1  https://support.google.com/mail/?p=NotAuthorizedError a1si1 - gsmtp`), Reputation, "pbl"},
		{"gmail 421 low reputation multi-line", wire(t, `421-4.7.0 [192.0.2.1      15] Our system has detected that this message is
421-4.7.0 suspicious due to the very low reputation of the sending IP address.
421-4.7.0 To protect our users from spam, mail sent from your IP address has
421-4.7.0 been temporarily rate limited. Please visit
421 4.7.0  https://support.google.com/mail/answer/188131 for more information.`), Reputation, "reputation"},
		{"gmail 421 unusual rate, flattened by a log", line(421, "4.7.0", "[192.0.2.1 15] Our system has detected an unusual rate of 421-4.7.0 unsolicited mail originating from your IP address. To protect our 421-4.7.0 users from spam, mail sent from your IP address has been temporarily 421-4.7.0 rate limited."), Reputation, "reputation"},
		{"gmail 5.7.1 unusual rate", line(550, "5.7.1", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address."), Reputation, "reputation"},

		// Microsoft.
		{"outlook spamhaus", line(550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS3130). [AM0PR01MB0001.eurprd01.prod.protection.outlook.com]"), Reputation, "blocklist"},
		{"outlook S3150", line(550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."), Reputation, "blocklist"},
		{"outlook S3140", line(550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140)."), Reputation, "blocklist"},
		{"outlook helo on DBL (S8001)", line(550, "5.7.1", "Service unavailable, Helo domain is listed in Spamhaus. To request removal from this list see https://www.spamhaus.org/query/dbl?domain=relay.example (S8001)"), Reputation, "helo"},
		{"outlook 5.7.606 banned IP", line(550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions."), Reputation, "blocklist"},
		{"outlook 5.7.708", line(550, "5.7.708", "Service unavailable. Access denied, traffic not accepted from this IP."), Reputation, "reputation"},
		{"outlook 4.7.650 S3113", line(451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3113)"), Reputation, "reputation"},
		{"hotmail DY-001", line(550, "", "DY-001 (SNT0-MC4-F14) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider. You can tell them that Hotmail does not relay dynamically-assigned IP ranges."), Reputation, "pbl"},
		{"hotmail SC-001", line(550, "", "SC-001 (BAY004-MC1F15) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider since part of their network is on our block list."), Reputation, "blocklist"},

		// Yahoo / AOL.
		{"yahoo BL21", line(553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes"), Reputation, "blocklist"},
		{"yahoo BL23, enhanced code inside the text", line(553, "", "Mail from 192.0.2.1 not allowed - 5.7.1 [BL23] Connections not accepted from IP addresses on Spamhaus XBL; see http://postmaster.yahoo.com/errors/550-bl23.html [550]"), Reputation, "blocklist"},
		{"yahoo TSS07 at MAIL", line(553, "5.7.1", "[TSS07] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list; see https://postmaster.verizonmedia.com/error-codes"), Reputation, "blocklist"},
		{"yahoo TSS04", line(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"), Reputation, "reputation"},
		{"yahoo TS02", line(421, "4.7.0", "[TS02] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.56.1; see https://help.yahoo.com/kb/postmaster"), Reputation, "reputation"},
		{"yahoo TS03", line(421, "4.7.1", "[TS03] All messages from 192.0.2.1 permanently deferred; Retrying will NOT succeed. See https://help.yahoo.com/kb/postmaster"), Reputation, "reputation"},
		{"yahoo TSS06", line(553, "5.7.2", "[TSS06] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes"), Reputation, "reputation"},

		// Others.
		{"icloud SBL", line(550, "5.7.1", "Mail from IP 192.0.2.1 was rejected due to listing in Spamhaus SBL. For details please see http://www.spamhaus.org/query/bl?ip=192.0.2.1"), Reputation, "blocklist"},
		{"postfix reject_rbl_client", line(554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1"), Reputation, "blocklist"},
		{"spamhaus sample text", line(550, "5.7.1", "Email rejected because 192.0.2.1 is listed by zen.spamhaus.org"), Reputation, "blocklist"},
		{"sorbs dynamic", line(554, "", "Service unavailable; Client host [192.0.2.1] blocked using dnsbl.sorbs.net; Dynamic IP Addresses See: http://www.sorbs.net/lookup.shtml?192.0.2.1"), Reputation, "pbl"},
		// mailcow/mailcow#241
		{"sorbs at RCPT", line(550, "5.7.1", "Service unavailable; client [192.0.2.1] blocked using dnsbl.sorbs.net"), Reputation, "blocklist"},
		// zone-eu/zone-mta PR #177, #251
		{"trend micro RBL+", line(550, "", "Service unavailable; Client Host [192.0.2.1] blocked using Trend Micro RBL+. Please see http://www.mail-abuse.com/cgi-bin/lookup?ip_address=192.0.2.1"), Reputation, "blocklist"},
		{"spamcop", line(550, "", `"JunkMail rejected - mx.example [192.0.2.1]:24706 is in an RBL: Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1"`), Reputation, "blocklist"},
		{"postfix cannot find your hostname (4xx)", line(450, "4.7.1", "Client host rejected: cannot find your hostname, [192.0.2.1]"), Reputation, "ptr"},
		{"does not properly resolve", line(550, "", "IP address does not properly resolve for reverse DNS lookup"), Reputation, "ptr"},
		{"sender IP must resolve", line(501, "5.7.1", "Sender IP must resolve"), Reputation, "ptr"},
		{"t-online BL", line(554, "", "IP=192.0.2.1 - A problem occurred. (Ask your postmaster for help or to contact tosa@rx.t-online.de to clarify.) (BL)"), Reputation, "blocklist"},
		{"t-online DIAL", line(554, "", "IP=192.0.2.1 - Dialup/transient IP not allowed. Use a mailgateway or contact toda@rx.t-online.de if obsolete. (DIAL)"), Reputation, "pbl"},
		{"t-online NOWL", line(554, "", "IP=192.0.2.1 - None/bad reputation. Ask your postmaster for help or to contact postmaster@rx.t-online.de for reset. (NOWL)"), Reputation, "reputation"},
		// ActiveCampaign/smtp-field-manual PR #65
		{"comcast PTR", line(554, "", "resimta-po-02v.sys.comcast.net comcast 192.0.2.1 Comcast requires that all mail servers must have a PTR record with a valid Reverse DNS entry. Learn more at http://postmaster.comcast.net/smtp-error-codes.php#RL000001"), Reputation, "ptr"},
		{"comcast block for spam", line(554, "", "imta14.emeryville.ca.mail.comcast.net comcast 192.0.2.2 Comcast block for spam. Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000010"), Reputation, "blocklist"},
		// EDSM-NET/FrontEnd#21, jeboehm/docker-mailserver#82: GMX's greeting.
		{"gmx bad PTR greeting multi-line", wire(t, `554-gmx.net (mxgmx017) Nemesis ESMTP Service not available
554-No SMTP service
554-Bad DNS PTR resource record.
554 For explanation visit http://postmaster.gmx.com/en/error-messages?ip=192.0.2.1&c=rdns`), Reputation, "ptr"},
		// EmailVerify/email-verify#38: 1&1 (same platform as web.de).
		{"1und1 invalid PTR greeting multi-line", wire(t, `554-kundenserver.de (mxeue010) Nemesis ESMTP Service not available
554-No SMTP service
554 invalid DNS PTR resource record, IP=192.0.2.1`), Reputation, "ptr"},
		// anujtenani/goaffpro#61
		{"gmx black listed greeting multi-line", wire(t, `554-gmx.net (mxgmx116) Nemesis ESMTP Service not available
554-No SMTP service
554-IP address is black listed.
554 For explanation visit https://postmaster.gmx.net/en/error-messages?ip=192.0.2.1&c=bip`), Reputation, "blocklist"},
		// iredmail/iRedMail#156: free.fr at the greeting.
		{"free.fr reverse DNS 421", line(421, "", "Refused. Your reverse DNS entry does not resolve to an IP."), Reputation, "ptr"},
		{"no PTR, code 571", line(571, "", "No PTR Record found. Reverse DNS required:"), Reputation, "ptr"},
		{"fix reverse DNS", line(550, "5.7.1", "Connections not accepted from servers without a valid sender domain. Fix reverse DNS for 192.0.2.1"), Reputation, "ptr"},

		// Sender authentication: never rerouted.
		{"gmail 5.7.26 multi-line", wire(t, `550-5.7.26 This mail has been blocked because the sender is unauthenticated.
550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.
550-5.7.26
550-5.7.26  Authentication results:
550-5.7.26  DKIM = did not pass
550-5.7.26  SPF [example.com] with ip: [192.0.2.1] = did not pass
550-5.7.26
550-5.7.26  For instructions on setting up authentication, go to
550 5.7.26  https://support.google.com/mail/answer/81126#authentication a1si1 - gsmtp`), SenderAuth, "spf-dkim"},
		{"gmail 5.7.26 older wording", line(550, "5.7.26", "This message does not have authentication information or fails to pass authentication checks. To best protect our users from spam, the message has been blocked."), SenderAuth, "spf-dkim"},
		{"gmail 5.7.26 unauthenticated", line(550, "5.7.26", "This mail is unauthenticated, which poses a security risk to the sender and Gmail users, and has been blocked."), SenderAuth, "spf-dkim"},
		{"gmail 421 SPF and DKIM (temporary)", line(421, "4.7.0", "This message does not pass authentication checks (SPF and DKIM both do not pass). SPF check for [example.com] does not pass with ip: [192.0.2.1]."), SenderAuth, "spf-dkim"},
		// nodemailer/nodemailer#469: the wrap falls inside the phrase.
		{"gmail DMARC multi-line", wire(t, `550-5.7.1 Unauthenticated email from yahoo.com is not accepted due to domain's
550-5.7.1 DMARC policy. Please contact the administrator of yahoo.com domain if
550-5.7.1 this was a legitimate mail. Please visit
550 5.7.1  https://support.google.com/mail/answer/2451690 to learn about the DMARC initiative.`), SenderAuth, "dmarc"},
		// zone-eu/zone-mta#434, sympa-community/sympa#1843
		{"microsoft 5.7.509 DMARC", line(550, "5.7.509", "Access denied, sending domain [EXAMPLE.ORG] does not pass DMARC verification and has a DMARC policy of reject. [AM0PR01MB0001.eurprd01.prod.outlook.com 2025-06-23T20:38:28.040Z 08DDB2564DE36667]"), SenderAuth, "dmarc"},
		// forwardemail/free-email-forwarding#29
		{"microsoft 5.7.23 SPF", line(550, "5.7.23", "The message was rejected because of Sender Policy Framework violation"), SenderAuth, "spf"},
		{"yahoo 5.7.9", line(550, "5.7.9", "This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM."), SenderAuth, "spf-dkim"},
		// justingit/dada-mail#717 (MailChannels)
		{"mailchannels SPF", line(550, "5.7.1", "[BFD] Sender prohibited by SPF"), SenderAuth, "spf"},
		// sisimai/p5-sisimai#467: an SPF refusal under a 5.1.0 code.
		{"SPF under 5.1.0", line(550, "5.1.0", "192.0.2.1 is not allowed to send from <example.jp> per it's SPF Record. Please inspect your SPF settings, and try again."), SenderAuth, "spf"},
		{"DMARC per policy", line(550, "5.7.1", "Email rejected per DMARC policy for example.org"), SenderAuth, "dmarc"},
		// dailydotdev/daily#1760
		{"DMARC milter", line(550, "5.7.1", "rejected by DMARC policy for example.dev with invalid ARC result."), SenderAuth, "dmarc"},
		// RFC 7372 codes with a receiver's own words.
		{"RFC 7372 X.7.20 DKIM", line(550, "5.7.20", "No passing DKIM signature found"), SenderAuth, "dkim"},
		{"RFC 7505 X.7.27 null MX sender", line(550, "5.7.27", "Sender address has null MX"), SenderAuth, "nullmx"},
		// The explicit rDNS code wins over a mention of SPF further on.
		{"5.7.25 naming SPF too", line(550, "5.7.25", "Reverse DNS validation failed; see our guidelines on PTR, SPF and DKIM"), Reputation, "ptr"},

		// Not ours: the recipient, the content, the client's own behaviour, a success.
		{"gmail no such user multi-line", wire(t, `550-5.1.1 The email account that you tried to reach does not exist. Please try
550-5.1.1 double-checking the recipient's email address for typos or
550-5.1.1 unnecessary spaces. For more information, go to
550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si1 - gsmtp`), None, ""},
		{"over quota", line(552, "5.2.2", "The email account that you tried to reach is over quota."), None, ""},
		{"greylisting", line(450, "4.2.0", "<b@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html"), None, ""},
		{"relay denied", line(554, "5.7.1", "<b@example.com>: Relay access denied"), None, ""},
		{"spam content", line(554, "5.7.1", "Message rejected as spam by Content Filtering."), None, ""},
		{"too many connections", line(421, "4.7.0", "mx.example Error: too many connections from 192.0.2.1"), None, ""},
		{"mailbox called rdns", line(550, "", "<rdns@example.com>: Recipient address rejected: User unknown in virtual mailbox table"), None, ""},
		{"X.1.x is about the recipient", line(550, "5.1.1", "User unknown; the mailbox is listed as closed in our blocklist of retired accounts"), None, ""},
		{"success", line(250, "2.0.0", "OK, not listed in spamhaus"), None, ""},
		{"no code", line(0, "", "blocked using zen.spamhaus.org"), None, ""},
	}
}

func TestClassify(t *testing.T) {
	for _, c := range classifyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got := Classify(c.st)
			if got.Kind != c.kind || got.Reason != c.reason {
				t.Fatalf("Classify(%q) = %v %q, want %v %q", c.st.String(), got.Kind, got.Reason, c.kind, c.reason)
			}
			if (got.Fix == "") != (c.kind == None) {
				t.Errorf("fix %q for kind %v", got.Fix, got.Kind)
			}
			if got.Reroutable() != (c.kind == Reputation) {
				t.Errorf("Reroutable() = %v for %v", got.Reroutable(), got.Kind)
			}
		})
	}
}

// TestClassify_Wire checks the assumption the multi-line rows rest on: every line is kept, the enhanced code
// comes from the first and its repetitions are dropped, and the lines are joined by spaces.
func TestClassify_Wire(t *testing.T) {
	st := wire(t, "550-5.7.25 first line\n550-5.7.25 second line\n550 5.7.25 last line")
	if st.Code != 550 || st.Enhanced != (smtpstatus.Enhanced{5, 7, 25}) || st.Text != "first line second line last line" {
		t.Fatalf("go-smtp gave %+v", st)
	}
}

// Every reason the table can return has its fix, written in ptrelay's words and naming what to change.
func TestClassify_EveryReasonHasAFix(t *testing.T) {
	for _, r := range rules {
		if r.source == "" {
			t.Errorf("rule %v %q %v has no source", r.kind, r.reason, r.text)
		}
		if r.kind == None {
			continue // a stop row: no refusal, no fix
		}
		fix := fixes[r.reason]
		if fix == "" {
			t.Errorf("reason %q has no fix", r.reason)
		}
		if r.kind == SenderAuth && !strings.Contains(fix, "record") && !strings.Contains(fix, "sign") {
			t.Errorf("sender-auth fix for %q names no record: %q", r.reason, fix)
		}
	}
}

func TestClassify_KindString(t *testing.T) {
	for k, want := range map[Kind]string{None: "none", Reputation: "reputation", SenderAuth: "sender-auth"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}

// FuzzClassify: remote replies are untrusted text. Classify must never panic, never call a success or a
// non-reply a refusal, and always pair a reason with a fix.
func FuzzClassify(f *testing.F) {
	f.Add(550, "5.7.25", "[192.0.2.1] The IP address sending this message does not have a\nPTR record setup")
	f.Add(553, "", "Mail from 192.0.2.1 not allowed - 5.7.1 [BL23] Connections not accepted from IP addresses on Spamhaus XBL")
	f.Add(550, "5.7.26", "unauthenticated, SPF did not pass; listed in spamhaus")
	f.Add(250, "", "blocked using zen.spamhaus.org")
	f.Add(421, "4.7.0", "[192.0.2.1 15] unusual rate of 421-4.7.0 unsolicited mail originating from your IP address")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		e, _ := smtpstatus.ParseEnhanced(enhanced)
		r := Classify(smtpstatus.Status{Code: code, Enhanced: e, Text: text})
		if r.Kind != None && code/100 != 4 && code/100 != 5 {
			t.Fatalf("a %d reply classified %v", code, r.Kind)
		}
		if (r.Kind == None) != (r.Reason == "") || (r.Reason == "") != (r.Fix == "") {
			t.Fatalf("Classify(%d %q %q) = %+v", code, enhanced, text, r)
		}
	})
}
