package relaytest

import (
	"slices"
	"strings"
)

// Transcripts are the commands a peer received, one list per session in the order the sessions began: what a
// test reads to prove how a client spoke (how many EHLOs, STARTTLS before AUTH, one session or two). Data lines
// are not commands and are left out; "." ends DATA.

// Transcripts returns the commands of every session the sink served since StartSink returned (its readiness
// probes left out). smtp-sink's verbose log does not say which session a line belongs to, so the transcripts
// are exact only for sessions that did not overlap: use them on a sink that serves one client at a time.
func (s *Sink) Transcripts() [][]string {
	var out [][]string
	connects := 0
	for _, line := range strings.Split(s.Log(), "\n") {
		_, msg, ok := strings.Cut(line, "smtp-sink: ")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(msg, "connect ("):
			connects++
			if connects > 2 { // the first two are StartSink's own (see probe)
				out = append(out, []string{})
			}
		case connects <= 2 || len(out) == 0 || msg == "disconnect" || !isCommandLine(msg):
		default:
			out[len(out)-1] = append(out[len(out)-1], msg)
		}
	}
	return out
}

// isCommandLine tells smtp-sink's logged commands from its other verbose lines (buffer sizes, timeouts).
func isCommandLine(msg string) bool {
	if msg == "." {
		return true
	}
	verb, _, _ := strings.Cut(msg, " ")
	switch strings.ToUpper(verb) {
	case "HELO", "EHLO", "LHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
		"VRFY", "XCLIENT", "XFORWARD":
		return true
	}
	return false
}

// CountVerb counts the commands of a transcript that start with verb ("EHLO"), case-insensitively.
func CountVerb(transcript []string, verb string) int {
	n := 0
	for _, c := range transcript {
		v, _, _ := strings.Cut(c, " ")
		if strings.EqualFold(v, verb) {
			n++
		}
	}
	return n
}

// postfixCommandLogging makes smtpd log every command its clients send (debug_peer_level 2 for loopback
// peers), which Postfix.Transcripts reads.
var postfixCommandLogging = []string{"debug_peer_list = 127.0.0.0/8, [::1]/128", "debug_peer_level = 2"}

// Transcripts returns the commands of every SMTP session the instance served, from its mail log: smtpd logs
// "< client[ip]: COMMAND" for every command, with PostfixOptions.LogCommands. Sessions are told apart by the
// smtpd process and its "connect from" lines, so concurrent sessions are transcribed correctly; sessions that
// sent no command (StartPostfix's readiness check) are left out. Commands sent after STARTTLS are logged like
// the others; an AUTH line keeps its mechanism only; smtpd does not log the "." that ends DATA.
func (pf *Postfix) Transcripts() [][]string {
	var out [][]string
	open := map[string]int{} // smtpd pid -> index of its current session in out
	for _, line := range strings.Split(pf.Log(), "\n") {
		i := strings.Index(line, "/smtpd[")
		if i < 0 {
			continue
		}
		pid, rest, ok := strings.Cut(line[i+len("/smtpd["):], "]: ")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "connect from "):
			open[pid] = len(out)
			out = append(out, []string{})
		case strings.HasPrefix(rest, "disconnect from "):
			delete(open, pid)
		case strings.HasPrefix(rest, "< "):
			n, ok := open[pid]
			if !ok {
				continue
			}
			_, cmd, ok := strings.Cut(rest, "]: ")
			if !ok {
				continue
			}
			if v, _, _ := strings.Cut(cmd, " "); strings.EqualFold(v, "AUTH") {
				cmd = strings.Join(strings.Fields(cmd)[:min(2, len(strings.Fields(cmd)))], " ")
			} else if !isCommandLine(cmd) {
				continue // a SASL response line, or a line of the message
			}
			out[n] = append(out[n], cmd)
		}
	}
	return slices.DeleteFunc(out, func(t []string) bool { return len(t) == 0 })
}
