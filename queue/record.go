package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// record is what the msgs bucket stores under a message's ID: the Message plus where its body lives.
type record struct {
	Message
	Spooled bool `json:"spooled,omitempty"` // body in spool/<ID>, else in the bodies bucket
}

func encodeRecord(r *record) ([]byte, error) {
	return json.Marshal(r)
}

// decodeRecord decodes and sanity-checks a stored record; its error text is the quarantine reason.
func decodeRecord(key, raw []byte) (*record, error) {
	if !ValidID(string(key)) {
		return nil, fmt.Errorf("key %q is not a queue ID", key)
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("does not decode: %v", err)
	}
	if r.ID != string(key) {
		return nil, fmt.Errorf("record ID %q stored under key %q", r.ID, key)
	}
	if len(r.Recipients) == 0 {
		return nil, errors.New("no recipients")
	}
	for i, rc := range r.Recipients {
		if !rc.State.Valid() {
			return nil, fmt.Errorf("recipient %d (%s): unknown state %q", i, rc.Addr, rc.State)
		}
	}
	return &r, nil
}

// damagedError is a record that does not decode (or whose spool file is gone): a storage failure that names
// the record and the reason it is quarantined with.
type damagedError struct {
	key    string
	reason string
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("record %s is damaged (%s); it is moved to quarantine", e.key, e.reason)
}

// load reads and decodes message id. A record that does not decode is a storage failure wrapping a
// *damagedError; the caller quarantines it (quarantine.go).
func load(b buckets, id string) (*record, error) {
	raw := b.msgs.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	r, err := decodeRecord([]byte(id), raw)
	if err != nil {
		return nil, storageErr("read "+id, &damagedError{key: id, reason: err.Error()})
	}
	return r, nil
}

// clone is a deep copy of r: what an update function may change without touching the version it started from.
// (Decoding the stored record a second time did the same at twice the cost.)
func (r *record) clone() *record {
	c := *r
	c.Recipients = make([]Recipient, len(r.Recipients))
	for i, rc := range r.Recipients {
		rc.Notify = slices.Clone(rc.Notify)
		rc.History = slices.Clone(rc.History)
		c.Recipients[i] = rc
	}
	return &c
}

func allFinal(m *Message) bool {
	for _, r := range m.Recipients {
		if !r.State.Final() {
			return false
		}
	}
	return true
}

// write stores the new version of a message and keeps the due index, the active index and the counts in step.
// It is the only code that writes the msgs, due and active buckets for live messages (Commit, Enqueue, Update,
// the admin verbs, recovery and migration all come here), so they cannot drift. old is nil for a new message;
// nw is nil to delete. A message whose recipients are all final is deleted with its inline body; removed
// reports that, and the caller deletes a spool file after the commit succeeds (never before: a failed commit
// must keep the body).
func write(b buckets, old, nw *record) (removed bool, err error) {
	var oldKey, newKey []byte
	var delta counts
	if old != nil {
		oldKey = dueKey(&old.Message)
		delta.add(&old.Message, -1)
	}
	if nw != nil && allFinal(&nw.Message) {
		nw = nil
	}
	if nw != nil {
		newKey = dueKey(&nw.Message)
		delta.add(&nw.Message, 1)
		trimHistory(&nw.Message)
		v, err := encodeRecord(nw)
		if err != nil {
			return false, fmt.Errorf("queue: encode %s: %w", nw.ID, err)
		}
		if err := b.msgs.Put([]byte(nw.ID), v); err != nil {
			return false, storageErr("put "+nw.ID, err)
		}
	} else if old != nil {
		if err := b.msgs.Delete([]byte(old.ID)); err != nil {
			return false, storageErr("delete "+old.ID, err)
		}
		if err := b.bodies.Delete([]byte(old.ID)); err != nil {
			return false, storageErr("delete body "+old.ID, err)
		}
		removed = true
	}
	if oldKey != nil && string(oldKey) != string(newKey) {
		if err := b.due.Delete(oldKey); err != nil {
			return false, storageErr("unindex "+old.ID, err)
		}
	}
	if newKey != nil && string(oldKey) != string(newKey) {
		if err := b.due.Put(newKey, []byte{}); err != nil {
			return false, storageErr("index "+nw.ID, err)
		}
	}
	if err := indexActive(b, old, nw); err != nil {
		return false, err
	}
	if err := changeCounts(b, delta); err != nil {
		return false, storageErr("count", err)
	}
	return removed, nil
}

// hasActive reports whether a recipient of m has an attempt in flight.
func hasActive(m *Message) bool {
	for _, r := range m.Recipients {
		if r.State == StateActive {
			return true
		}
	}
	return false
}

// indexActive keeps the active index in step with a write: recovery after a crash reads only the messages it
// names.
func indexActive(b buckets, old, nw *record) error {
	was := old != nil && hasActive(&old.Message)
	is := nw != nil && hasActive(&nw.Message)
	switch {
	case is && !was:
		if err := b.active.Put([]byte(nw.ID), []byte{}); err != nil {
			return storageErr("index active "+nw.ID, err)
		}
	case was && !is:
		if err := b.active.Delete([]byte(old.ID)); err != nil {
			return storageErr("unindex active "+old.ID, err)
		}
	}
	return nil
}

func trimHistory(m *Message) {
	for i := range m.Recipients {
		if h := m.Recipients[i].History; len(h) > MaxHistory {
			m.Recipients[i].History = append([]Attempt(nil), h[len(h)-MaxHistory:]...)
		}
	}
}
