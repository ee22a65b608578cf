package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/admin"
)

// Paging: a page of the queue holds defaultPageSize messages unless the admin asks for up to maxPageSize.
const (
	defaultPageSize = 50
	maxPageSize     = 500
	// maxActionIDs bounds one form's selection (a page's worth, with room to spare).
	maxActionIDs = 1000
)

// queueForm is the filter as the admin typed it, to show it back in the form.
type queueForm struct {
	State, Domain, Sender, Older string
	Limit                        int
	After                        string
}

// messageRow is one message of the listing: the columns of `ptrelay queue list`.
type messageRow struct {
	ID         string
	Size       int64
	Arrival    string // stamp in the server's zone
	Age        string
	Sender     string
	Recipients []recipientRow
	Checked    bool
}

type recipientRow struct {
	Addr      string
	State     queue.State
	Notes     string
	LastReply string
	Via       string
}

type queueData struct {
	Form     queueForm
	States   []queue.State
	Error    string // the filter's problem, in the CLI's words
	Filtered bool
	Rows     []messageRow
	Corrupt  []queue.CorruptRecord
	More     bool
	NextURL  string
	FirstURL string // set when this is not the first page
	AllURL   string // this page with every box ticked
	Back     string // this page, for the actions to come back to
	Counts   queue.Stats
}

// queueList is `ptrelay queue list` with the filters in the query string: state, domain, sender, older (a
// duration such as 2h or 3d), limit, after (paging).
func (s *Server) queueList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := queueData{States: admin.StateOrder()}
	d.Form = queueForm{State: q.Get("state"), Domain: q.Get("domain"), Sender: q.Get("sender"),
		Older: q.Get("older"), After: q.Get("after"), Limit: defaultPageSize}
	f, err := s.filter(q, &d.Form)
	if err != nil {
		d.Error = err.Error()
		d.Counts = s.svc.Status().Queue
		s.render(w, r, http.StatusBadRequest, "queue", queueFrame(r), d)
		return
	}
	d.Filtered = !f.SelectsAll()
	checked := q.Get("select") == "all"
	now := s.now()
	page, err := s.svc.Scan(f, func(it queue.Item) error {
		switch {
		case it.Corrupt != nil:
			d.Corrupt = append(d.Corrupt, *it.Corrupt)
		case it.Message != nil:
			d.Rows = append(d.Rows, s.row(it.Message, now, checked))
		}
		return nil
	})
	if err != nil {
		s.log.Warn("listing the queue failed", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The queue could not be read", err.Error())
		return
	}
	d.More = page.More
	base := withoutNotice(q)
	base.Del("select")
	if page.More {
		next := cloneValues(base)
		next.Set("after", page.Last)
		d.NextURL = "/queue?" + next.Encode()
	}
	if d.Form.After != "" {
		first := cloneValues(base)
		first.Del("after")
		d.FirstURL = "/queue?" + first.Encode()
	}
	all := cloneValues(base)
	all.Set("select", "all")
	d.AllURL = "/queue?" + all.Encode()
	d.Back = "/queue"
	if enc := base.Encode(); enc != "" {
		d.Back += "?" + enc
	}
	d.Counts = s.svc.Status().Queue
	s.render(w, r, http.StatusOK, "queue", queueFrame(r), d)
}

func queueFrame(r *http.Request) frame {
	return frame{Title: "Queue", Nav: "queue", Notice: noticeFrom(r.URL.Query())}
}

// filter checks the query string with the CLI's rules (admin.FilterArgs), so a page and `queue list` accept
// and refuse the same words.
func (s *Server) filter(q url.Values, form *queueForm) (queue.Filter, error) {
	args := admin.FilterArgs{State: form.State, Domain: form.Domain, Sender: form.Sender, After: form.After,
		Limit: defaultPageSize}
	if form.Older != "" {
		d, err := config.ParseDuration(form.Older)
		if err != nil || d <= 0 {
			return queue.Filter{}, fmt.Errorf("older %q is not a duration: give how long ago, e.g. 30m, 2h or 3d", form.Older)
		}
		args.Older = d.D()
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return queue.Filter{}, fmt.Errorf("limit %q: give a number of messages per page from 1 to %d", v, maxPageSize)
		}
		args.Limit, form.Limit = n, n
	}
	return args.Filter(s.now())
}

// row is one message as `queue list` shows it: recipients with their state, the notes after the address and
// the last reply with its route and relay.
func (s *Server) row(m *queue.Message, now time.Time, checked bool) messageRow {
	row := messageRow{ID: m.ID, Size: m.Size, Arrival: m.Arrival.In(s.loc).Format("2006-01-02 15:04:05"),
		Age: ago(now, m.Arrival), Sender: admin.SenderText(m.Envelope.From), Checked: checked}
	for i := range m.Recipients {
		rc := &m.Recipients[i]
		rr := recipientRow{Addr: rc.Addr, State: rc.State, Notes: strings.Join(admin.RecipientNotes(rc, now.In(s.loc)), ", ")}
		if a, ok := rc.LastAttempt(); ok {
			rr.LastReply = admin.ReplyText(a)
			rr.Via = strings.TrimSpace(a.Route + " " + a.Relay)
		}
		row.Recipients = append(row.Recipients, rr)
	}
	return row
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Notices: after an action the console redirects to the page the admin came from with what happened in the
// query string (did=VERB&n=COUNT, gone=1 when some messages had left the queue, none=1 when nothing was ticked),
// and that page words it. Only these fixed words come through the URL, never text.

func withoutNotice(q url.Values) url.Values {
	out := cloneValues(q)
	for _, k := range []string{"did", "n", "gone", "none"} {
		out.Del(k)
	}
	return out
}

var verbDone = map[admin.Verb]string{
	admin.VerbDelete:  "Deleted",
	admin.VerbHold:    "Held",
	admin.VerbRelease: "Released",
	admin.VerbRetry:   "Scheduled for an attempt now",
	admin.VerbBounce:  "Bouncing",
}

func noticeFrom(q url.Values) *notice {
	if q.Get("none") != "" {
		return &notice{Text: "No message was selected: tick the boxes of the messages first."}
	}
	verb := admin.Verb(q.Get("did"))
	if !verb.Valid() {
		return nil
	}
	n, _ := strconv.Atoi(q.Get("n"))
	text := fmt.Sprintf("%s: %d %s.", verbDone[verb], n, plural(n, "message"))
	if n == 0 {
		text = fmt.Sprintf("%s: no message changed (nothing to %s in the selection).", verbDone[verb], verb)
	}
	if q.Get("gone") != "" {
		text += " Some had already left the queue (delivered, bounced or deleted)."
	}
	return &notice{OK: n > 0, Text: text}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// confirmData is the page that asks before delete and bounce.
type confirmData struct {
	Verb     admin.Verb
	IDs      []string
	Messages []*queue.Message
	Missing  []string
	Back     string
}

// action takes one of the queue verbs on the ticked messages (field id, repeated), and answers 303 See Other
// to the page given in back. Delete and bounce first answer a page that asks for confirmation (nothing changed
// yet), whose form sends the same fields with confirmed=yes.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
		return
	}
	form := r.PostForm
	verb := admin.Verb(form.Get("verb"))
	if !verb.Valid() {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("%q is not an action: use delete, hold, release, retry or bounce.", verb))
		return
	}
	back := safeBack(form.Get("back"))
	ids, err := formIDs(form["id"])
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	if len(ids) == 0 {
		http.Redirect(w, r, withNotice(back, url.Values{"none": {"1"}}), http.StatusSeeOther)
		return
	}
	if (verb == admin.VerbDelete || verb == admin.VerbBounce) && form.Get("confirmed") != "yes" {
		s.confirm(w, r, verb, ids, back)
		return
	}
	u := userFrom(r.Context())
	n, err := s.svc.Do(verb, queue.Selector{IDs: ids}, "web_user", u.Name, "client", clientOf(r))
	gone := errors.Is(err, queue.ErrNotFound)
	if err != nil && !gone {
		s.errorPage(w, r, http.StatusInternalServerError, "The action failed",
			fmt.Sprintf("%s: %d %s changed, then: %v", verb, n, plural(n, "message"), err))
		return
	}
	if verb == admin.VerbDelete || verb == admin.VerbBounce {
		// The message pages of deleted and bounced mail are gone or about to be: back to the listing.
		if strings.HasPrefix(back, "/queue/") {
			back = "/queue"
		}
	}
	result := url.Values{"did": {string(verb)}, "n": {strconv.Itoa(n)}}
	if gone {
		result.Set("gone", "1")
	}
	http.Redirect(w, r, withNotice(back, result), http.StatusSeeOther)
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request, verb admin.Verb, ids []string, back string) {
	d := confirmData{Verb: verb, IDs: ids, Back: back}
	for _, id := range ids {
		m, err := s.svc.Get(id)
		if err != nil {
			d.Missing = append(d.Missing, id)
			continue
		}
		d.Messages = append(d.Messages, m)
	}
	title := map[admin.Verb]string{admin.VerbDelete: "Delete messages?", admin.VerbBounce: "Bounce messages?"}[verb]
	s.render(w, r, http.StatusOK, "confirm", frame{Title: title, Nav: "queue"}, d)
}

// formIDs checks the ticked IDs: queue IDs only (they become file names in the queue), each once.
func formIDs(in []string) ([]string, error) {
	if len(in) > maxActionIDs {
		return nil, fmt.Errorf("%d messages selected: at most %d at a time", len(in), maxActionIDs)
	}
	seen := map[string]bool{}
	var out []string
	for _, id := range in {
		if !queue.ValidID(id) {
			return nil, fmt.Errorf("%q is not a queue ID", id)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// safeBack accepts only a path of this console (the queue, a message, the status page) as the place to return
// to after an action, so the form cannot send the browser elsewhere.
func safeBack(back string) string {
	u, err := url.Parse(back)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.ContainsAny(back, "\\\r\n") ||
		!strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/queue"
	}
	switch {
	case u.Path == "/", u.Path == "/queue":
	case strings.HasPrefix(u.Path, "/queue/") && queue.ValidID(strings.TrimPrefix(u.Path, "/queue/")):
	default:
		return "/queue"
	}
	return (&url.URL{Path: u.Path, RawQuery: withoutNotice(u.Query()).Encode()}).String()
}

// withNotice adds the action's result to the page's query string.
func withNotice(back string, result url.Values) string {
	u, _ := url.Parse(back)
	q := withoutNotice(u.Query())
	for k, v := range result {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}
