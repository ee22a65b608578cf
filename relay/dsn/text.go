package dsn

import (
	"strings"

	"ptrelay/relay/smtpstatus"
)

// explanation is the human-readable first part: what happened to which recipient, what the receiving server
// said, and what to do, in plain words for the person who sent the message (often not a mail administrator).
func explanation(r Report) string {
	var b strings.Builder
	b.WriteString(wrap("", "This is the mail system at "+r.ReportingMTA+" (ptrelay)."))
	b.WriteString("\r\n")
	if r.Kind == Delayed {
		b.WriteString(wrap("", "Your message has not been delivered yet to the recipients below. This is only a "+
			"warning: you do not need to send the message again. The mail system keeps trying"+until(r)+
			" and will tell you if it gives up."))
	} else {
		b.WriteString(wrap("", "Your message could not be delivered to the recipients below. The mail system "+
			"has given up on them. The headers of your message are attached."))
	}
	for _, rs := range r.Recipients {
		b.WriteString("\r\n")
		b.WriteString(wrap("", "<"+textAddr(rs.Recipient)+">: "+outcome(rs)))
		if rs.Diagnostic != "" {
			who := "The receiving mail server replied:"
			switch {
			case !isSMTPReply(rs.Diagnostic):
				who = "The last attempt failed with:" // no reply at all: our own words follow
			case rs.RemoteMTA != "":
				who = "The receiving mail server " + asciiText(rs.RemoteMTA) + " replied:"
			}
			b.WriteString(wrap("    ", who))
			b.WriteString(wrap("        ", asciiText(rs.Diagnostic)))
		} else {
			b.WriteString(wrap("    ", "Status "+rs.Status+"."))
		}
		fix := asciiText(rs.Fix)
		if fix == "" {
			fix = defaultFix(rs)
		}
		b.WriteString(wrap("    ", "What to do: "+fix))
	}
	b.WriteString("\r\n")
	about := "Your message"
	if r.MessageID != "" {
		about += " has the ID " + asciiText(r.MessageID) + " at " + r.ReportingMTA
	}
	if !r.Arrival.IsZero() {
		about += "; it was received on " + date(r.Arrival)
	}
	b.WriteString(wrap("", about+". Your mail administrator can look it up there."))
	return b.String()
}

func until(r Report) string {
	var last string
	for _, rs := range r.Recipients {
		if !rs.WillRetryUntil.IsZero() {
			last = date(rs.WillRetryUntil) // recipients of one message share its lifetime
		}
	}
	if last == "" {
		return ""
	}
	return " until " + last
}

func outcome(rs RecipientStatus) string {
	switch rs.Action {
	case "delayed":
		return "not delivered yet, still trying."
	case "failed":
		return "delivery failed."
	default:
		return rs.Action + "."
	}
}

// defaultFix says what to do when the delivery side gave no Fix, from the status's subject (RFC 3463 3.x).
func defaultFix(rs RecipientStatus) string {
	if rs.Action == "delayed" {
		return "nothing for now. If the message is urgent, reach the recipient another way."
	}
	e, _ := smtpstatus.ParseEnhanced(rs.Status)
	switch e[1] {
	case 1:
		return "check the address for typing mistakes, then send the message again."
	case 2:
		return "the recipient's mailbox cannot take mail (it may be full or disabled); reach them another way."
	case 3:
		if e[2] == 4 {
			return "the message is too big for the receiving system; send smaller attachments or a link."
		}
		return "the receiving system could not take the message; try again later or reach the recipient another way."
	case 4:
		return "check that the domain of the address is spelled right; if it is, forward this report to your mail administrator."
	case 7:
		return "the receiving system refused the message by its policy; forward this report to your mail administrator."
	default:
		return "forward this report to your mail administrator."
	}
}
