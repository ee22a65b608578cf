package admin

import (
	"strconv"
	"strings"
	"time"
)

// SmarthostStatus is one smart host's health and sending budgets, as the delivery side reports them: up, down
// (since when, until when, and the last error), probing (its pause is over: the next delivery decides) or
// limited (a budget is used up, or the provider refused for its quota, until LimitedUntil).
type SmarthostStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	State   string `json:"state"` // "up" | "down" | "probing" | "limited"
	// Since is when the host went down (down or probing); zero while it is up.
	Since        time.Time `json:"since,omitzero"`
	DownUntil    time.Time `json:"down_until,omitzero"` // the end of the pause
	LimitedUntil time.Time `json:"limited_until,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	Sessions     int       `json:"sessions"`     // open now
	MaxSessions  int       `json:"max_sessions"` // max_connections
	Budgets      []Budget  `json:"budgets,omitempty"`
}

// Budget is one rate limit of a smart host and how much of it the current window used ("7412/10000 rcpt 24h").
type Budget struct {
	Kind          string `json:"kind"`   // "msg" | "rcpt"
	Window        string `json:"window"` // "1m", "1h", "24h"
	WindowSeconds int64  `json:"window_seconds"`
	Used          int    `json:"used"`
	Limit         int    `json:"limit"`
}

// Remaining is what the window still allows.
func (b Budget) Remaining() int { return max(b.Limit-b.Used, 0) }

// String renders the budget as `ptrelay status` prints it: "7,412/10,000 rcpt 24h".
func (b Budget) String() string {
	return thousands(b.Used) + "/" + thousands(b.Limit) + " " + b.Kind + " " + b.Window
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// WindowName names a window's length the short way: "1s", "1m", "1h", "24h".
func WindowName(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
