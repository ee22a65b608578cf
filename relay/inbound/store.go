package inbound

import (
	"io"

	"ptrelay/queue"
)

// store is the slice of queue.Store the data path uses. It exists so a test can inject a storage failure, a
// fault the real queue cannot be made to produce on demand.
type store interface {
	newWriter() (bodyWriter, error)
}

type bodyWriter interface {
	io.Writer
	Commit(env queue.Envelope, rcpts []queue.Recipient) (string, error)
	Abort() error
}

type queueStore struct{ s *queue.Store }

func (q queueStore) newWriter() (bodyWriter, error) { return q.s.NewWriter() }
