package mtasts

import (
	"encoding/json"
	"sync"

	"ptrelay/queue"
)

// StateTable is the queue database's table of MTA-STS policies, one JSON record per domain.
const StateTable = "mtasts"

// QueueStore keeps policies in the queue database (queue.Store's state tables), so they survive restarts.
type QueueStore struct{ Q *queue.Store }

// Load reads domain's entry; a record that does not decode reads as none (it is fetched again).
func (s QueueStore) Load(domain string) (Entry, bool, error) {
	var e Entry
	found := false
	err := s.Q.ViewState(StateTable, func(t queue.StateTable) error {
		if v := t.Get(domain); v != nil {
			found = json.Unmarshal(v, &e) == nil
		}
		return nil
	})
	return e, found, err
}

// Save writes e, committed and fsync'd.
func (s QueueStore) Save(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.Q.UpdateState(StateTable, func(t queue.StateTable) error { return t.Put(e.Domain, b) })
}

// Delete removes domain's entry.
func (s QueueStore) Delete(domain string) error {
	return s.Q.UpdateState(StateTable, func(t queue.StateTable) error { return t.Delete(domain) })
}

// All returns every entry, by domain.
func (s QueueStore) All() ([]Entry, error) {
	var out []Entry
	err := s.Q.ViewState(StateTable, func(t queue.StateTable) error {
		return t.ForEach(func(_ string, v []byte) error {
			var e Entry
			if json.Unmarshal(v, &e) == nil {
				out = append(out, e)
			}
			return nil
		})
	})
	return out, err
}

// MemStore keeps policies in memory (tests, and `ptrelay check`, which must not write the daemon's database).
type MemStore struct {
	mu sync.Mutex
	m  map[string]Entry
}

func (s *MemStore) Load(domain string) (Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[domain]
	return e, ok, nil
}

func (s *MemStore) Save(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Entry{}
	}
	s.m[e.Domain] = e
	return nil
}

func (s *MemStore) Delete(domain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, domain)
	return nil
}

func (s *MemStore) All() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.m))
	for _, e := range s.m {
		out = append(out, e)
	}
	return out, nil
}
