package web

import (
	"context"
	"net/http"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/relay/selfcheck"
)

// checkTimeout bounds one run, as `ptrelay check` bounds its own.
const checkTimeout = 2 * time.Minute

type checkData struct {
	Available bool
	Ran       bool
	Error     string
	Result    selfcheck.Result
	Checks    []dnscheck.Check
	TLS       []checkLine
	Summary   selfcheck.Summary
}

type checkLine struct{ Level, Text string }

// checkPage is `ptrelay check`, run when asked (?run=1): a run makes DNS queries and a port-25 probe, and
// changes nothing, so read-only users may run it too. One run at a time; a second request waits for its turn.
func (s *Server) checkPage(w http.ResponseWriter, r *http.Request) {
	d := checkData{Available: s.check != nil}
	f := frame{Title: "Check", Nav: "check"}
	if !d.Available || r.URL.Query().Get("run") != "1" {
		s.render(w, r, http.StatusOK, "check", f, d)
		return
	}
	select {
	case s.checking <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	res, err := s.check(ctx)
	cancel()
	<-s.checking
	d.Ran = true
	if err != nil {
		d.Error = err.Error()
	} else {
		d.Result, d.Checks, d.Summary = res, res.Checks(), res.Summary()
		for _, c := range res.TLSClients {
			level, text := selfcheck.TLSLine(c)
			d.TLS = append(d.TLS, checkLine{level, text})
		}
	}
	s.log.Info("check run", "web_user", userFrom(r.Context()).Name, "verdict", string(res.Verdict))
	s.render(w, r, http.StatusOK, "check", f, d)
}
