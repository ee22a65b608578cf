package web

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ptrelay/queue"
	"ptrelay/relay/admin"
)

// Bounds on what one message page reads of the stored message: the headers are untrusted input of any size
// (the same bounds as `queue show`), and a body of tens of MB is no page.
const (
	maxHeaderLines = 500
	maxHeaderBytes = 256 << 10
	maxBodyBytes   = 1 << 20
)

type messageData struct {
	Message    *queue.Message
	Sender     string
	Client     string
	Options    string
	Headers    []string
	HeadersCut bool
	ShowBody   bool
	Body       string
	BodyCut    bool
	Recipients []recipientView
	Back       string
	CanAct     bool
}

type recipientView struct {
	*queue.Recipient
	Notes   string
	DSN     string
	History []attemptView // newest first
	Last    *attemptView
}

type attemptView struct {
	At      time.Time
	Route   string
	Relay   string
	Outcome string
	Reply   string
	Meaning string
}

// message is `ptrelay queue show ID`: envelope, headers, each recipient's history with the last reply and what
// ptrelay made of it; the body only with ?body=1, as text (the template escapes it; it is never rendered as
// HTML).
func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var m *queue.Message
	err := errNotID
	if queue.ValidID(id) {
		m, err = s.svc.Get(id)
	}
	if err != nil {
		if errors.Is(err, queue.ErrNotFound) || errors.Is(err, errNotID) {
			s.errorPage(w, r, http.StatusNotFound, "Not in the queue",
				"Message "+id+" is not in the queue: it was delivered, bounced or deleted, or the ID is mistyped.")
			return
		}
		s.errorPage(w, r, http.StatusInternalServerError, "The message could not be read", err.Error())
		return
	}
	now := s.now()
	d := messageData{Message: m, Sender: admin.SenderText(m.Envelope.From), Client: admin.ClientText(m.Envelope),
		Options: admin.OptionsText(m.Envelope), ShowBody: r.URL.Query().Get("body") == "1",
		Back: "/queue/" + m.ID, CanAct: !userFrom(r.Context()).ReadOnly}
	if err := s.readBody(m.ID, &d); err != nil {
		s.log.Warn("reading a message body failed", "id", m.ID, "err", err)
	}
	for i := range m.Recipients {
		rc := &m.Recipients[i]
		rv := recipientView{Recipient: rc, Notes: strings.Join(admin.RecipientNotes(rc, now.In(s.loc)), ", ")}
		var dsn []string
		if len(rc.Notify) > 0 {
			dsn = append(dsn, "NOTIFY="+strings.Join(rc.Notify, ","))
		}
		if rc.ORcpt != "" {
			dsn = append(dsn, "ORCPT="+rc.ORcpt)
		}
		rv.DSN = strings.Join(dsn, " ")
		for j := len(rc.History) - 1; j >= 0; j-- {
			a := rc.History[j]
			rv.History = append(rv.History, attemptView{At: a.At, Route: a.Route, Relay: a.Relay, Outcome: a.Outcome,
				Reply: admin.ReplyText(a), Meaning: meaning(a)})
		}
		if len(rv.History) > 0 {
			rv.Last = &rv.History[0]
		}
		d.Recipients = append(d.Recipients, rv)
	}
	s.render(w, r, http.StatusOK, "message", frame{Title: "Message " + m.ID, Nav: "queue",
		Notice: noticeFrom(r.URL.Query())}, d)
}

var errNotID = errors.New("not a queue ID")

// readBody reads the header section (bounded) and, when asked, the body as text (bounded). Text that is not
// UTF-8 is shown with replacement characters.
func (s *Server) readBody(id string, d *messageData) error {
	rc, err := s.svc.Body(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	total := 0
	for n := 0; ; n++ {
		line, err := br.ReadString('\n')
		total += len(line)
		text := strings.TrimRight(line, "\r\n")
		if text == "" {
			break // the blank line (or the end): the body starts after it
		}
		if n >= maxHeaderLines || total > maxHeaderBytes {
			d.HeadersCut = true
			break
		}
		d.Headers = append(d.Headers, strings.ToValidUTF8(text, "\uFFFD"))
		if err != nil {
			break
		}
	}
	if !d.ShowBody || d.HeadersCut {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(br, maxBodyBytes+1))
	if len(body) > maxBodyBytes {
		body, d.BodyCut = body[:maxBodyBytes], true
	}
	d.Body = strings.ToValidUTF8(strings.ReplaceAll(string(body), "\r\n", "\n"), "\uFFFD")
	return err
}

// meaning says what ptrelay made of an attempt's reply, in words.
func meaning(a queue.Attempt) string {
	switch a.Outcome {
	case "sent":
		return "delivered: the next hop took responsibility for it"
	case "deferred":
		return "temporary failure: ptrelay keeps the message and tries again"
	case "bounced":
		return "permanent failure: ptrelay gave up and sent a bounce (DSN) to the sender, unless the sender is <>"
	case "rerouted":
		return "refused on this route for a reason the other route avoids: sent again through the other one"
	case "expired":
		return "not delivered within queue.lifetime: bounced to the sender"
	}
	switch a.Code / 100 {
	case 2:
		return "accepted (" + strconv.Itoa(a.Code) + ")"
	case 4:
		return "temporary failure (4xx)"
	case 5:
		return "permanent failure (5xx)"
	}
	return "no reply: the connection failed"
}
