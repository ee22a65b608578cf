package web

import (
	"net/http"

	"ptrelay/queue"
	"ptrelay/relay/admin"
)

// routes is the console behind the protections: GET pages that only read, and one POST for the actions.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.HandleFunc("GET /queue", s.queueList)
	mux.HandleFunc("GET /queue/{id}", s.message)
	mux.HandleFunc("POST /actions", s.action)
	mux.HandleFunc("GET /check", s.checkPage)
	mux.Handle("GET /static/", staticFS())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "Not found", "There is no such page. Start from the status page.")
	})
	return mux
}

// stateCount is one box of the queue summary.
type stateCount struct {
	State queue.State
	Count int
}

type dashboardData struct {
	Status admin.Status
	States []stateCount
}

// dashboard is what `ptrelay status` shows: egress verdict with reasons and fixes, smart hosts, queue counts
// and the oldest message, alerts, the certificate, pending restarts, the last errors.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	st := s.svc.Status()
	d := dashboardData{Status: st}
	for _, state := range admin.StateOrder() {
		if n := st.Queue.ByState[state]; n > 0 || !state.Final() {
			d.States = append(d.States, stateCount{State: state, Count: n})
		}
	}
	s.render(w, r, http.StatusOK, "dashboard", frame{Title: "Status", Nav: "dashboard", Refresh: 30}, d)
}
