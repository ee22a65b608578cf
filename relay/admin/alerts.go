package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The alerts part of the API:
//
//	GET  /v1/alerts        []Alert: the conditions that hold
//	POST /v1/alerts/test   []ChannelResult: a test notice sent on every channel, and what happened

// Alert is a condition that holds, as `ptrelay alerts list` and `ptrelay status` show it.
type Alert struct {
	Key      string    `json:"key"`
	Event    string    `json:"event"`
	Subject  string    `json:"subject,omitempty"`
	Severity string    `json:"severity"`          // info | warn | crit
	State    string    `json:"state"`             // firing | pending | flapping | quiet (below min_severity)
	Summary  string    `json:"summary"`           // the notice's subject line
	Since    time.Time `json:"since"`             // when it started
	FiresAt  time.Time `json:"fires_at,omitzero"` // pending: when it fires if it still holds
	Fix      string    `json:"fix,omitempty"`
}

// ChannelResult is what happened to the test notice on one channel.
type ChannelResult struct {
	Channel string `json:"channel"` // mail | webhook
	Outcome string `json:"outcome"` // sent | queued | failed
	Detail  string `json:"detail"`  // the server's reply, the HTTP status, the queue ID or the error
}

// testTimeout bounds `alerts test` on the daemon's side, below the client's wait for an answer.
const testTimeout = 45 * time.Second

// SetAlerts installs the daemon's alert functions: list returns the conditions that hold, test sends a test
// notice per channel. Both must be safe for concurrent use. Without them the alert routes answer empty lists.
func (s *Server) SetAlerts(list func() []Alert, test func(context.Context) []ChannelResult) {
	s.alertList, s.alertTest = list, test
}

func (s *Server) alertRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		out := []Alert{}
		if s.alertList != nil {
			out = append(out, s.alertList()...)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/alerts/test", func(w http.ResponseWriter, r *http.Request) {
		out := []ChannelResult{}
		if s.alertTest != nil {
			ctx, cancel := context.WithTimeout(r.Context(), testTimeout)
			out = append(out, s.alertTest(ctx)...)
			cancel()
		}
		s.log.Info("admin: alerts test", "uid", peerFrom(r.Context()).uid, "channels", len(out))
		writeJSON(w, http.StatusOK, out)
	})
}

// Alerts returns the conditions that hold in the running daemon.
func (c *Client) Alerts() ([]Alert, error) {
	var out []Alert
	err := c.getJSON("/v1/alerts", &out)
	return out, err
}

// AlertsTest asks the daemon to send a test notice on every channel.
func (c *Client) AlertsTest() ([]ChannelResult, error) {
	resp, err := c.do(http.MethodPost, "/v1/alerts/test", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []ChannelResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("admin socket: bad answer to alerts test: %v", err)
	}
	return out, nil
}

// RenderAlerts prints the conditions that hold, most severe first, each with its fix.
func RenderAlerts(w io.Writer, alerts []Alert) error {
	ew := &errWriter{w: w}
	if len(alerts) == 0 {
		ew.printf("No alert condition holds.\n")
		return ew.err
	}
	for i, a := range alerts {
		if i > 0 {
			ew.printf("\n")
		}
		ew.printf("%s\n", alertLine(a))
		ew.printf("  key:   %s\n", a.Key)
		if a.Fix != "" {
			ew.printf("  fix:   %s\n", oneLine(a.Fix))
		}
	}
	return ew.err
}

// alertLine is one condition on one line: severity, state, summary, since.
func alertLine(a Alert) string {
	state := a.State
	switch a.State {
	case "pending":
		state = "pending, fires " + stamp(a.FiresAt) + " if it still holds"
	case "quiet":
		state = "below min_severity: digest only"
	}
	return fmt.Sprintf("%-5s %s (%s; since %s)", strings.ToUpper(a.Severity), clip(oneLine(a.Summary), 200), state, stamp(a.Since))
}

// RenderTestResults prints what happened to the test notice on each channel.
func RenderTestResults(w io.Writer, res []ChannelResult) error {
	ew := &errWriter{w: w}
	if len(res) == 0 {
		ew.printf("No alert channel is configured: set alerts.mail_to and/or alerts.webhook_url.\n")
		return ew.err
	}
	for _, r := range res {
		ew.printf("%-8s %-7s %s\n", r.Channel+":", r.Outcome, oneLine(r.Detail))
	}
	return ew.err
}
