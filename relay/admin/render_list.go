package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"ptrelay/queue"
)

// ListRenderer prints a listing as it is read: Item for each entry of a Scan, then Finish once with how the
// scan ended and the quarantined records (nil when the listing was filtered). Nothing is held but running
// totals, so printing 100,000 messages takes the memory of one.
type ListRenderer interface {
	Item(queue.Item) error
	Finish(page queue.Page, quarantined []queue.CorruptRecord) error
}

// NewListWriter prints the queue like mailq: per message its ID, size, arrival and sender, then one line per
// recipient with its state and next attempt, and the last reply under it; a total line; then the damaged
// records. Times are shown in now's location. filtered changes the empty-queue line to say that nothing
// matched.
func NewListWriter(w io.Writer, now time.Time, filtered bool) ListRenderer {
	return &listWriter{ew: &errWriter{w: w}, now: now, filtered: filtered, byState: map[queue.State]int{}}
}

type listWriter struct {
	ew       *errWriter
	now      time.Time
	filtered bool
	msgs     int
	bytes    int64
	byState  map[queue.State]int
	corrupt  []queue.CorruptRecord // damaged records met on the way (few: each is a damaged record)
}

func (l *listWriter) Item(it queue.Item) error {
	if it.Corrupt != nil {
		l.corrupt = append(l.corrupt, *it.Corrupt)
		return l.ew.err
	}
	m := it.Message
	if m == nil {
		return l.ew.err
	}
	ew, loc := l.ew, l.now.Location()
	if l.msgs == 0 {
		ew.printf("%-13s %9s  %-19s  %s\n", "-Queue ID-", "--Size--", "----Arrival Time---", "-Sender/Recipient-------")
	}
	l.msgs++
	l.bytes += m.Size
	ew.printf("%-13s %9d  %-19s  %s\n", m.ID, m.Size, m.Arrival.In(loc).Format(timeLayout), sender(m.Envelope.From))
	for i := range m.Recipients {
		r := &m.Recipients[i]
		l.byState[r.State]++
		ew.printf("  %-9s %s%s\n", r.State, r.Addr, listDetail(r, l.now))
		if a, ok := r.LastAttempt(); ok {
			ew.printf("  %-9s %s\n", "", clip(oneLine(reply(a)+" "+via(a)), 160))
		}
	}
	return ew.err
}

func (l *listWriter) Finish(page queue.Page, quarantined []queue.CorruptRecord) error {
	ew, loc := l.ew, l.now.Location()
	switch {
	case l.msgs == 0 && l.filtered:
		ew.printf("No message matches\n")
	case l.msgs == 0:
		ew.printf("Mail queue is empty\n")
	default:
		rcpts := 0
		var parts []string
		for _, s := range stateOrder {
			rcpts += l.byState[s]
			if l.byState[s] > 0 || !s.Final() {
				parts = append(parts, fmt.Sprintf("%d %s", l.byState[s], s))
			}
		}
		ew.printf("-- %d Kbytes in %d %s, %d %s: %s.\n", (l.bytes+1023)/1024, l.msgs, plural(l.msgs, "message"),
			rcpts, plural(rcpts, "recipient"), strings.Join(parts, ", "))
	}
	if page.More {
		ew.printf("-- stopped at the limit of %d %s; more match\n", page.Count, plural(page.Count, "message"))
	}
	corrupt := append(l.corrupt, quarantined...)
	if len(corrupt) > 0 {
		ew.printf("\nCorrupt records (quarantined, never delivered; the queue could not decode them):\n")
		for _, c := range corrupt {
			at := "not yet quarantined"
			if !c.At.IsZero() {
				at = "quarantined " + c.At.In(loc).Format(timeLayout)
			}
			ew.printf("  %-13s  %s  %s\n", c.Key, at, oneLine(c.Reason))
		}
	}
	return ew.err
}

// NewJSONListWriter prints the listing as one JSON object, {"messages": [...], "corrupt": [...]} (corrupt left
// out when empty; "more": true when a limit stopped it), written message by message, each message on a line of
// its own: indenting every field as json.MarshalIndent does took half the time of a 100,000-message listing,
// and a line per message suits line tools too.
func NewJSONListWriter(w io.Writer) ListRenderer {
	return &jsonListWriter{ew: &errWriter{w: w}}
}

type jsonListWriter struct {
	ew      *errWriter
	msgs    int
	corrupt []queue.CorruptRecord
}

func (j *jsonListWriter) Item(it queue.Item) error {
	if it.Corrupt != nil {
		j.corrupt = append(j.corrupt, *it.Corrupt)
		return j.ew.err
	}
	if it.Message == nil {
		return j.ew.err
	}
	if j.msgs == 0 {
		j.ew.printf("{\n  \"messages\": [\n    ")
	} else {
		j.ew.printf(",\n    ")
	}
	j.msgs++
	if it.JSON != nil {
		if j.ew.err == nil {
			_, j.ew.err = j.ew.w.Write(it.JSON) // what element would write, already encoded
		}
	} else {
		j.element(it.Message)
	}
	return j.ew.err
}

// element writes v as an element of a top-level array member, on one line.
func (j *jsonListWriter) element(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		if j.ew.err == nil {
			j.ew.err = err
		}
		return
	}
	if j.ew.err == nil {
		_, j.ew.err = j.ew.w.Write(b)
	}
}

func (j *jsonListWriter) Finish(page queue.Page, quarantined []queue.CorruptRecord) error {
	if j.msgs == 0 {
		j.ew.printf("{\n  \"messages\": []")
	} else {
		j.ew.printf("\n  ]")
	}
	if corrupt := append(j.corrupt, quarantined...); len(corrupt) > 0 {
		j.ew.printf(",\n  \"corrupt\": [\n    ")
		for i := range corrupt {
			if i > 0 {
				j.ew.printf(",\n    ")
			}
			j.element(corrupt[i])
		}
		j.ew.printf("\n  ]")
	}
	if page.More {
		j.ew.printf(",\n  \"more\": true")
	}
	j.ew.printf("\n}\n")
	return j.ew.err
}

// RenderList prints a listing held in memory (tests, small tools) through NewListWriter.
func RenderList(w io.Writer, msgs []*queue.Message, corrupt []queue.CorruptRecord, now time.Time) error {
	l := NewListWriter(w, now, false)
	for _, m := range msgs {
		if err := l.Item(queue.Item{Message: m}); err != nil {
			return err
		}
	}
	return l.Finish(queue.Page{}, corrupt)
}
