package delivery

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"ptrelay/relay/route"
	"ptrelay/relay/smtpstatus"
)

// logAttempt writes the one line per recipient attempt (Postfix-like fields, so admins can grep) and
// feeds Observers.OnAttempt. It is the only place either happens.
//
//	id=… to=<…> relay=host[ip]:port route=direct tls=mta-sts delay=1.2 dsn=2.0.0 status=sent reply="250 2.0.0 Ok"
//
// tls= is the security level the attempt ran under, in Postfix 3.11's words: none, may, encrypt, verify, dane
// or mta-sts; for a deferral by a recipient's policy, the policy that deferred it. It is left out when no
// session was tried (a DNS failure, an expiry).
//
// The reply is its own field rather than Postfix's "status=sent (250 …)" so that status=sent stays greppable
// with slog's quoting and stays a clean value in JSON logs.
func (s *Scheduler) logAttempt(r Result) {
	level := slog.LevelInfo
	if r.Outcome != Sent {
		level = slog.LevelWarn
	}
	relay := r.Relay
	if relay == "" {
		relay = "none"
	}
	rt := string(r.Route)
	if rt == "" {
		rt = "none"
	}
	attrs := []slog.Attr{
		slog.String("id", r.ID),
		slog.String("to", "<"+r.Rcpt+">"),
		slog.String("relay", relay),
		slog.String("route", rt),
	}
	if r.TLS != "" {
		attrs = append(attrs, slog.String("tls", r.TLS))
	}
	attrs = append(attrs,
		slog.String("delay", seconds(r.Delay)),
		slog.String("dsn", dsnField(r)),
		slog.String("status", string(r.Outcome)),
		slog.String("reply", replyText(r.Status)),
		slog.Int("attempt", r.Attempt),
	)
	// A refusal the table knows gets its reason, and, unless the reroute's own line gives it, the record to fix.
	if r.Outcome != Sent {
		if ref := refusalFor(r.Route, r.Status); ref.Kind != route.None {
			attrs = append(attrs, slog.String("reason", ref.Reason))
			if r.Outcome != Rerouted {
				attrs = append(attrs, slog.String("fix", ref.Fix))
			}
		}
	}
	s.log.LogAttrs(context.Background(), level, "delivery", attrs...)
	if s.obs.OnAttempt != nil {
		s.obs.OnAttempt(r)
	}
}

func dsnField(r Result) string {
	if e := r.Status.Enhanced.String(); e != "" {
		return e
	}
	switch r.Outcome {
	case Sent:
		return "2.0.0"
	case Deferred:
		return "4.0.0"
	}
	return "5.0.0"
}

// seconds renders a delay like Postfix: one decimal below 10 s, whole seconds above.
func seconds(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	}
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// Reply renders the attempt's reply for people: the remote's reply as on the wire ("550 5.1.1 ..."), or for a
// failure where no server answered our enhanced code and description ("4.4.1 connect failed: ...").
func (r Result) Reply() string { return replyText(r.Status) }

// replyText renders a status for the log and the history: the wire form for a remote reply, "4.4.1 text" for
// one of ours (Code 0: the peer said nothing).
func replyText(st smtpstatus.Status) string {
	if st.Code != 0 {
		return st.String()
	}
	if e := st.Enhanced.String(); e != "" {
		return e + " " + st.Text
	}
	return st.Text
}
