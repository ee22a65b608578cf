package admin

import (
	"fmt"
	"io"
	"strings"
	"time"

	"ptrelay/queue"
)

// RenderStatus prints the daemon's status. A Status with only Version and Queue (what the CLI can learn with no
// daemon running) prints only those.
func RenderStatus(w io.Writer, st Status) error {
	ew := &errWriter{w: w}
	ew.printf("%-14s %s\n", "Version:", dash(st.Version))
	if !st.Started.IsZero() {
		up := ""
		if st.Uptime != "" {
			up = " (up " + st.Uptime + ")"
		}
		ew.printf("%-14s %s%s\n", "Running since:", stamp(st.Started), up)
	}
	if len(st.Listeners) > 0 {
		ew.printf("%-14s %s\n", "Listening:", strings.Join(st.Listeners, ", "))
	}
	renderCertificate(ew, st.Certificate)
	if len(st.PendingRestart) > 0 {
		ew.printf("%-14s %s changed by a reload: restart ptrelay to apply (systemctl restart ptrelay)\n",
			"Pending:", strings.Join(st.PendingRestart, ", "))
	}
	for _, e := range st.Egress {
		ip := e.IP
		if ip == "" {
			ip = "(not found)"
		}
		checked := ""
		if !e.Checked.IsZero() {
			checked = "  (checked " + stamp(e.Checked) + ")"
		}
		ew.printf("%-14s %s  %s%s\n", "Egress "+e.Family+":", ip, dash(e.Verdict), checked)
		for _, r := range e.Reasons {
			ew.printf("%-14s   - %s\n", "", oneLine(r))
		}
	}
	renderSmarthosts(ew, st.Smarthosts)
	ew.printf("%-14s %s\n", "Queue:", queueLine(st.Queue, st.OldestAge))
	renderTLSPolicy(ew, st.TLSPolicy)
	if st.Queue.Corrupt > 0 {
		ew.printf("%-14s %d %s quarantined: see ptrelay queue list\n", "Corrupt:", st.Queue.Corrupt,
			plural(st.Queue.Corrupt, "record"))
	}
	if len(st.Alerts) > 0 {
		ew.printf("Alerts:\n")
		for _, a := range st.Alerts {
			ew.printf("  %s\n", alertLine(a))
		}
	}
	if len(st.TLSClients) > 0 {
		ew.printf("TLS clients:\n")
		for _, c := range st.TLSClients {
			note := ""
			if c.Legacy() {
				note = "  (legacy: needs smtp.tls_legacy)"
			}
			ew.printf("  %s  %-39s %s %s%s\n", stamp(c.At), c.Client, c.Version, c.Cipher, note)
		}
	}
	if len(st.LastErrors) > 0 {
		ew.printf("Last errors:\n")
		for _, e := range st.LastErrors {
			ew.printf("  %s  %-13s  <%s>  %s\n", stamp(e.At), e.ID, e.Rcpt, clip(oneLine(e.Reply), 160))
		}
	}
	return ew.err
}

// renderCertificate prints the STARTTLS certificate's names and expiry, and the file to give servers that must
// trust it.
func renderCertificate(ew *errWriter, c *Certificate) {
	if c == nil {
		return
	}
	names := strings.Join(c.Names, ", ")
	if names == "" {
		names = "(no subject alternative names)"
	}
	kind := ""
	if c.SelfSigned {
		kind = "self-signed (tls_cert = \"auto\"), "
	}
	ew.printf("%-14s %s\n", "Certificate:", names)
	ew.printf("%-14s %sexpires %s, %s\n", "", kind, c.NotAfter.UTC().Format(time.DateOnly), c.File)
}

func queueLine(s queue.Stats, oldest string) string {
	if s.Messages == 0 {
		return "empty"
	}
	var parts []string
	for _, st := range stateOrder {
		if n := s.ByState[st]; n > 0 || !st.Final() {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	line := fmt.Sprintf("%d %s; recipients: %s", s.Messages, plural(s.Messages, "message"), strings.Join(parts, ", "))
	if oldest != "" {
		line += "; oldest " + oldest
	}
	return line
}

// renderSmarthosts prints a line per smart host: its state, budgets and sessions, and its last error:
//
//	Smart hosts:
//	  m365: up; 7,412/10,000 rcpt 24h, 12/30 msg 1m; 2/3 sessions
//	  isp: down since 2026-12-01 10:02:03 UTC, next try 10:08:03 UTC
//	       last error 10:02:03 UTC: 4.4.1 connect failed: ...
func renderSmarthosts(ew *errWriter, list []SmarthostStatus) {
	if len(list) == 0 {
		return
	}
	ew.printf("Smart hosts:\n")
	for _, h := range list {
		line := h.Name + ": " + h.State
		switch h.State {
		case "down":
			line += " since " + stamp(h.Since) + ", next try " + h.DownUntil.UTC().Format("15:04:05 MST")
		case "probing":
			line += " (down since " + stamp(h.Since) + "; the next delivery decides)"
		}
		if !h.LimitedUntil.IsZero() {
			line += " until " + stamp(h.LimitedUntil)
		}
		var budgets []string
		for _, b := range h.Budgets {
			budgets = append(budgets, b.String())
		}
		if len(budgets) > 0 {
			line += "; " + strings.Join(budgets, ", ")
		}
		line += fmt.Sprintf("; %d/%d %s", h.Sessions, h.MaxSessions, plural(h.MaxSessions, "session"))
		ew.printf("  %s\n", line)
		if h.LastError != "" {
			ew.printf("  %s  last error %s: %s\n", strings.Repeat(" ", len(h.Name)), stamp(h.LastErrorAt), clip(oneLine(h.LastError), 160))
		}
	}
}
