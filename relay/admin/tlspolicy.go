package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The outbound TLS policy part of the API:
//
//	GET  /v1/mtasts?domain=D   []MTASTSPolicy: the cached MTA-STS policies (D empty: all)
//	POST /v1/mtasts/flush      {"domain": D} -> verbResult: drop them, so the next delivery fetches again

// MTASTSPolicy is one domain's entry in the MTA-STS cache, as `ptrelay mtasts show` prints it.
type MTASTSPolicy struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id,omitempty"`
	Mode    string    `json:"mode,omitempty"` // enforce | testing | none; "" for a domain remembered without a policy
	MX      []string  `json:"mx,omitempty"`
	MaxAge  int64     `json:"max_age,omitempty"` // seconds
	Fetched time.Time `json:"fetched,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	LastUse time.Time `json:"last_use,omitzero"`
	// RetryAfter: no new look (for a domain without a policy) or no new fetch of RetryID before then.
	RetryAfter time.Time `json:"retry_after,omitzero"`
	RetryID    string    `json:"retry_id,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

// TLSPolicyStatus is the outbound TLS policy part of `ptrelay status`.
type TLSPolicyStatus struct {
	// DANE is "on", "off" (the resolver does not validate, or is not trusted) or "disabled" (delivery.dane).
	DANE        string      `json:"dane"`
	DANEDetail  string      `json:"dane_detail,omitempty"`
	DANEFix     string      `json:"dane_fix,omitempty"`
	DANEChecked time.Time   `json:"dane_checked,omitzero"`
	MTASTS      bool        `json:"mta_sts"`               // delivery.mta_sts
	Policies    int         `json:"mta_sts_policies"`      // MTA-STS policies held in the cache
	Reports     []TLSReport `json:"tls_reports,omitempty"` // TLS-RPT counts of today and yesterday (UTC)
}

// TLSReport is one domain's TLS-RPT counts for one day and policy type.
type TLSReport struct {
	Day      string         `json:"day"`
	Domain   string         `json:"domain"`
	Type     string         `json:"type"` // sts | tlsa
	Success  int            `json:"success"`
	Failures map[string]int `json:"failures,omitempty"`
}

// SetMTASTS installs the daemon's MTA-STS cache functions: list returns the entries of a domain ("" : all),
// flush drops them and says how many. Both must be safe for concurrent use. Without them the routes answer
// empty lists and 0.
func (s *Server) SetMTASTS(list func(domain string) ([]MTASTSPolicy, error), flush func(domain string) (int, error)) {
	s.mtastsList, s.mtastsFlush = list, flush
}

func (s *Server) mtastsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/mtasts", func(w http.ResponseWriter, r *http.Request) {
		out := []MTASTSPolicy{}
		if s.mtastsList != nil {
			list, err := s.mtastsList(r.URL.Query().Get("domain"))
			if err != nil {
				writeError(w, err)
				return
			}
			out = append(out, list...)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/mtasts/flush", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Domain string `json:"domain"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Error: "bad request: " + err.Error()})
			return
		}
		n := 0
		if s.mtastsFlush != nil {
			var err error
			if n, err = s.mtastsFlush(req.Domain); err != nil {
				writeError(w, err)
				return
			}
		}
		s.log.Info("admin: mtasts flush", "uid", peerFrom(r.Context()).uid, "domain", req.Domain, "count", n)
		writeJSON(w, http.StatusOK, verbResult{Count: n})
	})
}

// MTASTS returns the running daemon's MTA-STS cache entries of domain ("" : all).
func (c *Client) MTASTS(domain string) ([]MTASTSPolicy, error) {
	var out []MTASTSPolicy
	err := c.getJSON("/v1/mtasts?domain="+url.QueryEscape(domain), &out)
	return out, err
}

// MTASTSFlush asks the running daemon to drop the MTA-STS policies of domain ("" : all).
func (c *Client) MTASTSFlush(domain string) (int, error) {
	body, _ := json.Marshal(struct {
		Domain string `json:"domain"`
	}{domain})
	resp, err := c.do(http.MethodPost, "/v1/mtasts/flush", strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out verbResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil {
		return 0, fmt.Errorf("admin socket: bad answer to mtasts flush: %v", err)
	}
	return out.Count, fromWire(out.wireError)
}

// RenderMTASTS prints the MTA-STS cache, one block per domain.
func RenderMTASTS(w io.Writer, list []MTASTSPolicy) error {
	ew := &errWriter{w: w}
	if len(list) == 0 {
		ew.printf("No MTA-STS policy is cached.\n")
		return ew.err
	}
	for i, p := range list {
		if i > 0 {
			ew.printf("\n")
		}
		if p.Mode == "" {
			ew.printf("%s  no policy (%s); looked up again after %s\n", p.Domain, clip(oneLine(p.LastError), 200), stamp(p.RetryAfter))
			continue
		}
		ew.printf("%s  mode %s  id %s\n", p.Domain, p.Mode, dash(p.ID))
		if len(p.MX) > 0 {
			ew.printf("  mx:       %s\n", strings.Join(p.MX, " "))
		}
		ew.printf("  max_age:  %ds, fetched %s, expires %s\n", p.MaxAge, stamp(p.Fetched), stamp(p.Expires))
		if !p.LastUse.IsZero() {
			ew.printf("  used:     %s\n", stamp(p.LastUse))
		}
		if p.LastError != "" {
			ew.printf("  error:    %s\n", clip(oneLine(p.LastError), 300))
		}
		if p.RetryID != "" && !p.RetryAfter.IsZero() {
			ew.printf("  retry:    policy id %s not fetched again before %s\n", p.RetryID, stamp(p.RetryAfter))
		}
	}
	return ew.err
}

// renderTLSPolicy prints the outbound TLS policy lines of `ptrelay status`.
func renderTLSPolicy(ew *errWriter, t *TLSPolicyStatus) {
	if t == nil {
		return
	}
	switch t.DANE {
	case "on":
		ew.printf("%-14s on: %s\n", "DANE:", oneLine(t.DANEDetail))
	case "disabled":
		ew.printf("%-14s off (delivery.dane = \"off\")\n", "DANE:")
	default:
		ew.printf("%-14s off: %s\n", "DANE:", oneLine(t.DANEDetail))
		for _, l := range strings.Split(t.DANEFix, "\n") {
			if l != "" {
				ew.printf("%-14s   %s\n", "", l)
			}
		}
	}
	if t.MTASTS {
		words := "policies"
		if t.Policies == 1 {
			words = "policy"
		}
		ew.printf("%-14s on: %d %s cached (ptrelay mtasts show)\n", "MTA-STS:", t.Policies, words)
	} else {
		ew.printf("%-14s off (delivery.mta_sts = false)\n", "MTA-STS:")
	}
	if len(t.Reports) == 0 {
		return
	}
	ew.printf("TLS-RPT counts (UTC days):\n")
	for _, r := range t.Reports {
		failed := 0
		var parts []string
		keys := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			failed += r.Failures[k]
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Failures[k]))
		}
		detail := ""
		if len(parts) > 0 {
			detail = " (" + strings.Join(parts, ", ") + ")"
		}
		ew.printf("  %s  %-30s %-4s %d ok, %d failed%s\n", r.Day, r.Domain, r.Type, r.Success, failed, detail)
	}
}
