package admin

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ptrelay/queue"
)

// FilterArgs are a listing's selection as an admin writes it: the flags of `ptrelay queue list`, or the fields
// of a web page's form. Filter checks them and turns them into the queue.Filter that the store, the admin
// socket and any other reader of the queue take, so every front end accepts the same words.
type FilterArgs struct {
	State  string        // queued, active, deferred, hold, delivered or bounced
	Domain string        // a recipient domain ("example.com" or "@example.com")
	Sender string        // an address, "<>" for the null sender, or "@domain"
	Older  time.Duration // arrived more than this long ago
	Limit  int           // at most this many messages; 0: all
	After  string        // a queue ID: start after it (the previous page's last)
}

// Filter validates the arguments; each error names the argument and what it accepts. now anchors Older.
func (a FilterArgs) Filter(now time.Time) (queue.Filter, error) {
	var f queue.Filter
	if a.State != "" {
		st := queue.State(strings.ToLower(a.State))
		if !st.Valid() {
			return f, fmt.Errorf("state %q is not a recipient state: use queued, active, deferred, hold, delivered or bounced", a.State)
		}
		f.State = st
	}
	if a.Domain != "" {
		d := strings.TrimPrefix(strings.TrimSpace(a.Domain), "@")
		if d == "" || strings.ContainsAny(d, "@ \t<>") {
			return f, fmt.Errorf("domain %q is not a domain: give it as example.com", a.Domain)
		}
		f.Domain = d
	}
	if a.Sender != "" {
		snd := strings.TrimSpace(a.Sender)
		if snd != "<>" {
			snd = strings.TrimSuffix(strings.TrimPrefix(snd, "<"), ">")
		}
		if snd == "" || snd == "@" || strings.ContainsAny(snd, " \t") || (snd != "<>" && !strings.Contains(snd, "@")) {
			return f, fmt.Errorf("sender %q: give an address (user@example.com), @example.com for a whole domain, or <> for the null sender", a.Sender)
		}
		f.Sender = snd
	}
	if a.Older < 0 {
		return f, fmt.Errorf("older %s is negative: give how long ago, e.g. 2h or 3d", a.Older)
	}
	if a.Older > 0 {
		f.Before = now.Add(-a.Older)
	}
	if a.Limit < 0 {
		return f, fmt.Errorf("limit %d is negative: give a number of messages, or 0 for all", a.Limit)
	}
	f.Limit = a.Limit
	if a.After != "" {
		if !queue.ValidID(a.After) {
			return f, fmt.Errorf("after %q is not a queue ID", a.After)
		}
		f.After = a.After
	}
	return f, nil
}

// The filter on the wire (GET /v1/messages?...): the queue.Filter itself, the time as RFC 3339, so the daemon
// and the CLI agree on it whatever their clocks.

func encodeFilter(f queue.Filter) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("state", string(f.State))
	set("domain", f.Domain)
	set("sender", f.Sender)
	if !f.Before.IsZero() {
		v.Set("before", f.Before.Format(time.RFC3339Nano))
	}
	set("after", f.After)
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v
}

func decodeFilter(v url.Values) (queue.Filter, error) {
	var f queue.Filter
	for k := range v {
		switch k {
		case "state", "domain", "sender", "before", "after", "limit":
		default:
			return f, fmt.Errorf("unknown list parameter %q", k)
		}
	}
	args := FilterArgs{State: v.Get("state"), Domain: v.Get("domain"), Sender: v.Get("sender"), After: v.Get("after")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return f, fmt.Errorf("limit %q is not a number", s)
		}
		args.Limit = n
	}
	f, err := args.Filter(time.Time{})
	if err != nil {
		return f, err
	}
	if s := v.Get("before"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return f, fmt.Errorf("before %q is not an RFC 3339 time", s)
		}
		f.Before = t
	}
	return f, nil
}
