package delivery

import (
	"strings"

	"ptrelay/relay/smtpstatus"
)

// What a smart host's reply means for the host, beyond what it means for the recipient (outcome.go). A smart host
// is one of several ways out, so a refusal that is about the host (it is overloaded, its login is wrong, its
// budget is spent) or about the sender (this account may not send as that address) must not bounce the mail:
// the next host of the list takes it. Only what is about the recipient takes the ordinary path.

// hostClass sorts a smart host's reply.
type hostClass int

const (
	classRecipient hostClass = iota // about the recipient or the message: deferred or bounced as usual
	classHost                       // the host's problem: the next host at once; counts toward marking it down
	classQuota                      // the host's sending budget is spent: limited until its window frees
	classSender                     // the host refuses this sender: the next host for this message
)

func (c hostClass) String() string {
	return [...]string{"recipient", "host", "quota", "sender"}[c]
}

// quotaTexts are the providers' words for a spent budget, lower-cased: Google's SMTP relay ("550 5.4.5 Daily
// SMTP relay limit exceeded for user", "550 5.7.1 Daily SMTP relay limit exceeded for customer"), Gmail ("550
// 5.4.5 Daily user sending limit exceeded"), Amazon SES ("454 Throttling failure: Daily message quota
// exceeded"), Microsoft 365 ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException").
var quotaTexts = []string{
	"daily smtp relay limit", "daily user sending", "daily message quota", "submissionquotaexceeded",
	"sending quota exceeded", "message quota exceeded",
}

// hostTexts are replies that are about the host at any stage: Amazon SES's sending-rate throttle ("454
// Throttling failure: Maximum sending rate exceeded"), Microsoft's per-mailbox connection limit ("432 4.3.2
// STOREDRV.ClientSubmit; sender thread limit exceeded"), Microsoft's retired password logins ("550 5.7.30 Basic
// authentication is not supported for Client Submission"), and a host that wants a login it did not get ("530
// 5.7.57 Client not authenticated to send mail").
var hostTexts = []string{
	"throttling failure", "thread limit exceeded", "basic authentication is not supported",
	"client not authenticated",
}

// sendAsTexts are refusals after DATA that are about the sender (Microsoft 365 checks send-as rights at
// submission: "554 5.2.252 SendAsDenied", "550 5.7.60 SMTP; Client does not have permissions to send as this
// sender").
var sendAsTexts = []string{"sendasdenied", "permissions to send as"}

// smarthostClass judges a reply a smart host gave at stage st. Only refusals (4xx, 5xx) are judged: a status of
// ours (Code 0) is about the network or us, and the ordinary rules apply.
func smarthostClass(st stage, s smtpstatus.Status) hostClass {
	if s.Code/100 != 4 && s.Code/100 != 5 {
		return classRecipient // ours (Code 0: about the network or us), or a success whatever its words
	}
	text := strings.ToLower(s.Text)
	has := func(list []string) bool {
		for _, w := range list {
			if strings.Contains(text, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has(quotaTexts):
		return classQuota
	case s.Code == 421, has(hostTexts), s.Enhanced == smtpstatus.Enhanced{5, 7, 30}:
		return classHost
	case st == stMail && s.Code/100 == 5:
		// RFC 5321 3.3: MAIL names the sender only; a permanent refusal of it is about the sender (5.7.1 not
		// allowed to send as, 5.1.8 bad sender), and another host may allow it.
		return classSender
	case st == stData && s.Code/100 == 5 && (has(sendAsTexts) || s.Enhanced == smtpstatus.Enhanced{5, 7, 60}):
		return classSender
	}
	return classRecipient
}

// hostFix is the sentence for the admin about a host-level reply, "" when the reply needs none (the host is
// overloaded, or not reachable: nothing to change on this side).
func hostFix(h *Smarthost, s smtpstatus.Status) string {
	text := strings.ToLower(s.Text)
	switch {
	case s.Enhanced == smtpstatus.Enhanced{5, 7, 30} || strings.Contains(text, "basic authentication is not supported"):
		return LoginFix(h, s)
	case strings.Contains(text, "thread limit exceeded"):
		return "set max_connections = 3 for smart host " + h.Name + ": Microsoft 365 allows three sessions per mailbox"
	case strings.Contains(text, "throttling failure"):
		return "set message_rate of smart host " + h.Name + " to the provider's sending rate (Amazon SES: the account's maximum send rate per second)"
	case strings.Contains(text, "client not authenticated"):
		return "smart host " + h.Name + " wants a login: set its username (and auth)"
	}
	return ""
}
