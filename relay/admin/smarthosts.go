package admin

import "time"

// SmarthostStatus is one smart host's health and sending budgets, as the delivery side reports them: up, down
// (since when, and the last error) or limited (a budget is used up until its window frees).
type SmarthostStatus struct {
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	State     string    `json:"state"` // "up" | "down" | "limited"
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Budgets   []Budget  `json:"budgets,omitempty"`
}

// Budget is one rate limit of a smart host and how much of it the current window used ("7412/10000 rcpt 24h").
type Budget struct {
	Kind   string `json:"kind"`   // "msg" | "rcpt"
	Window string `json:"window"` // "1m", "1h", "24h"
	Used   int    `json:"used"`
	Limit  int    `json:"limit"`
}
