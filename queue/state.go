package queue

import (
	"errors"

	bolt "go.etcd.io/bbolt"
)

// The queue database also keeps small state of other subsystems that must survive a restart and belongs with
// the mail it is about: alert conditions, cached MTA-STS policies, smart-host sending windows. Each subsystem
// names its own table; the queue stores opaque bytes and never interprets them. Tables live under one top-level
// bucket so that they can never collide with the queue's own buckets, and are created on first write (a
// database written before a table existed needs no migration).

var bucketState = []byte("state")

// StateTable is one named table of key -> value inside a state transaction.
type StateTable struct{ b *bolt.Bucket }

// Get returns a copy of the value stored under key, or nil when there is none.
func (t StateTable) Get(key string) []byte {
	if t.b == nil {
		return nil
	}
	v := t.b.Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// Put stores val under key (read-write transactions only).
func (t StateTable) Put(key string, val []byte) error {
	if t.b == nil {
		return ErrReadOnly
	}
	return t.b.Put([]byte(key), val)
}

// Delete removes key; a missing key is not an error.
func (t StateTable) Delete(key string) error {
	if t.b == nil {
		return ErrReadOnly
	}
	return t.b.Delete([]byte(key))
}

// ForEach calls fn for every key in key order; fn must not keep val (copy it). An error from fn stops the walk
// and is returned.
func (t StateTable) ForEach(fn func(key string, val []byte) error) error {
	if t.b == nil {
		return nil
	}
	return t.b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// ViewState runs fn in a read transaction on table. A table never written reads as empty.
func (s *Store) ViewState(table string, fn func(StateTable) error) error {
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		var t StateTable
		if root := tx.Bucket(bucketState); root != nil {
			t.b = root.Bucket([]byte(table))
		}
		fnErr = fn(t)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return storageErr("read state", err)
	}
	return nil
}

// UpdateState runs fn in a read-write transaction on table, creating it when needed; the changes are committed
// and fsync'd before UpdateState returns, or none of them are when fn returns an error. It does not go through
// the message commit loop: callers are expected to write seldom (on a state change, or batched on a timer), not
// per message.
func (s *Store) UpdateState(table string, fn func(StateTable) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if table == "" {
		return errors.New("queue: empty state table name")
	}
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketState)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(table))
		if err != nil {
			return err
		}
		fnErr = fn(StateTable{b: b})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return storageErr("write state", err)
	}
	return nil
}
