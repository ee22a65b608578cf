package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Read side, for the admin socket, the CLI (queue list/show), a web page and the metrics. A read-only Store
// (offline inspection) answers the same way.

// Filter selects messages for Scan. The zero Filter selects every message. State and Domain apply to one
// recipient together: {State: deferred, Domain: "example.com"} selects messages with a deferred recipient at
// example.com.
type Filter struct {
	State  State     // a recipient in this state; "" for any
	Domain string    // a recipient at this domain (case-insensitive); "" for any
	Sender string    // the envelope sender: an address (case-insensitive), "<>" for the null sender, "@domain"
	Before time.Time // arrived before this time (the CLI's -older); zero for any
	// After and Limit page through the queue: messages whose ID sorts after After (the Last of the previous
	// page), at most Limit of them (0: no limit).
	After string
	Limit int
}

// SelectsAll reports whether the filter selects every message (paging aside): only then are damaged records
// listed, since nothing can be said about what they would match.
func (f *Filter) SelectsAll() bool {
	return f.State == "" && f.Domain == "" && f.Sender == "" && f.Before.IsZero()
}

// Match reports whether m is selected (paging aside).
func (f *Filter) Match(m *Message) bool {
	if !f.Before.IsZero() && !m.Arrival.Before(f.Before) {
		return false
	}
	if f.Sender != "" && !senderMatches(f.Sender, m.Envelope.From) {
		return false
	}
	if f.State == "" && f.Domain == "" {
		return true
	}
	for _, r := range m.Recipients {
		if (f.State == "" || r.State == f.State) && (f.Domain == "" || strings.EqualFold(domainOf(r.Addr), f.Domain)) {
			return true
		}
	}
	return false
}

func senderMatches(want, from string) bool {
	switch {
	case want == "<>":
		return from == ""
	case strings.HasPrefix(want, "@"):
		return from != "" && strings.EqualFold(domainOf(from), want[1:])
	}
	return strings.EqualFold(from, want)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// Item is one entry of a Scan: a message, or a record that does not decode (Corrupt, with At zero: found, not
// yet quarantined), reported only when the filter selects every message. An Item with neither set marks the
// end of a batch: the scan is about to read the next one, and whoever streams the listing over a network or to
// a terminal flushes there, so that matches trickling out of a large queue are not held in a buffer.
type Item struct {
	Message *Message
	Corrupt *CorruptRecord
	// JSON is Message as json.Marshal encodes it, taken from the stored record rather than encoded again
	// (which took a third of a listing's time): what the admin socket and a JSON listing write as it is.
	JSON []byte
}

// spooledSuffix ends a stored record whose body is a spool file: the one field a record (encodeRecord) has
// beyond Message, last and left out when false.
const spooledSuffix = `,"spooled":true}`

// messageJSON is the Message part of a stored record, copied out of the transaction's memory.
func messageJSON(v []byte) []byte {
	if bytes.HasSuffix(v, []byte(spooledSuffix)) {
		return append(bytes.Clone(v[:len(v)-len(spooledSuffix)]), '}')
	}
	return bytes.Clone(v)
}

// BatchEnd reports whether the item only marks the end of a batch.
func (it Item) BatchEnd() bool { return it.Message == nil && it.Corrupt == nil }

// Page says how a Scan ended.
type Page struct {
	Count int    `json:"count"`          // messages handed to fn
	Last  string `json:"last,omitempty"` // the ID of the last of them: Filter.After for the next page
	More  bool   `json:"more,omitempty"` // Limit stopped the scan and at least one more message matches
}

// A Scan reads the records in read transactions of at most scanBatch selected messages or scanExamine records,
// and calls fn between them: the caller (an HTTP response to a slow reader, a terminal) never holds a
// transaction open, since a long read transaction stops bbolt from reusing freed pages (the file grows) and,
// once the file must grow, makes every commit wait for it (inbound mail would stall). Memory is one batch,
// whatever the queue's size. (Variables so that tests can make batches small.)
var (
	scanBatch   = 256
	scanExamine = 4096
)

// Scan calls fn for each message f selects, in ID order (the order of arrival), and for each damaged record
// when f selects every message. An error from fn stops the scan and is returned. The messages are read
// batch by batch, each batch consistent in itself: a message committed during a long scan appears if it sorts
// after the scan's position (new messages do), and one removed before the scan reaches it does not.
func (s *Store) Scan(f Filter, fn func(Item) error) (Page, error) {
	var page Page
	after := f.After
	items := make([]Item, 0, scanBatch)
	for {
		items = items[:0]
		var last string
		done := false
		err := s.view(func(b buckets) error {
			c := b.msgs.Cursor()
			k, v := c.First()
			if after != "" {
				k, v = c.Seek([]byte(after))
				if k != nil && string(k) == after {
					k, v = c.Next()
				}
			}
			for examined := 0; ; k, v = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				if examined == scanExamine || len(items) == scanBatch {
					return nil
				}
				examined++
				last = string(k)
				r, err := decodeRecord(k, v)
				if err != nil {
					if f.SelectsAll() {
						items = append(items, Item{Corrupt: &CorruptRecord{Key: string(k), Reason: err.Error()}})
					}
					continue
				}
				if f.Match(&r.Message) {
					items = append(items, Item{Message: &r.Message, JSON: messageJSON(v)})
				}
			}
		})
		if err != nil {
			return page, err
		}
		for i := range items {
			it := items[i]
			if it.Message != nil {
				if f.Limit > 0 && page.Count == f.Limit {
					page.More = true
					return page, nil
				}
				page.Count++
				page.Last = it.Message.ID
			}
			if err := fn(it); err != nil {
				return page, err
			}
			items[i] = Item{} // let the message go as soon as fn is done with it
		}
		if done {
			return page, nil
		}
		if err := fn(Item{}); err != nil {
			return page, err
		}
		after = last
	}
}

// List returns every message, oldest first. It holds the whole queue in memory: for tests and small tools;
// whatever may face a large queue uses Scan.
func (s *Store) List() ([]*Message, error) {
	var out []*Message
	_, err := s.Scan(Filter{}, func(it Item) error {
		if it.Message != nil {
			out = append(out, it.Message)
		}
		return nil
	})
	return out, err
}

// Get returns a copy of one message; an unknown ID wraps ErrNotFound. A damaged record is quarantined.
func (s *Store) Get(id string) (*Message, error) {
	var m *Message
	err := s.view(func(b buckets) error {
		r, err := load(b, id)
		if err == nil {
			m = &r.Message
		}
		return err
	})
	if d, ok := damagedIn(err); ok {
		s.quarantine([]damage{d}, nil)
	}
	return m, err
}

// Body opens a message's stored body (with the headers the relay prepended). The caller closes it. A spool file
// stays readable after the message is removed while it is open. A spooled message whose file is gone is
// quarantined (the delivery side would otherwise retry it for ever).
func (s *Store) Body(id string) (io.ReadCloser, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a queue ID", ErrNotFound, id)
	}
	var inline []byte
	var spooled bool
	err := s.view(func(b buckets) error {
		r, err := load(b, id)
		if err != nil {
			return err
		}
		spooled = r.Spooled
		if !spooled {
			v := b.bodies.Get([]byte(id))
			if v == nil && r.Size > 0 {
				return storageErr("read body "+id, errors.New("inline body missing"))
			}
			inline = bytes.Clone(v) // v points into the mmap, valid only inside the transaction
		}
		return nil
	})
	if d, ok := damagedIn(err); ok {
		s.quarantine([]damage{d}, nil)
	}
	if err != nil {
		return nil, err
	}
	if !spooled {
		return io.NopCloser(bytes.NewReader(inline)), nil
	}
	f, err := os.Open(s.spoolPath(id))
	if errors.Is(err, os.ErrNotExist) {
		if _, gerr := s.Get(id); errors.Is(gerr, ErrNotFound) {
			// Removed between the read transaction and the open: the message was just finished or deleted.
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		s.quarantine([]damage{{key: id, spool: true}}, nil)
		return nil, storageErr("open body "+id, fmt.Errorf("spool file missing, message quarantined: %w", err))
	}
	if err != nil {
		return nil, storageErr("open body "+id, err)
	}
	return f, nil
}
