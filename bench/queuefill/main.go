// Command queuefill fills a stopped ptrelay's queue with deferred messages, for bench/queue-scale.sh: filling
// 100,000 messages through SMTP and a failing delivery takes far longer than writing them through the queue's
// own API, which is what this does (commit, claim, defer: the three transactions a real deferral costs, with
// the same kind of history entry).
//
//	queuefill -dir DATA_DIR -count N [-size BYTES] [-workers W]
//
// It first postpones to tomorrow every recipient that is due (what an earlier `queue retry -all` left), so the
// daemon starts idle, then adds messages until the queue holds N, each with one recipient deferred until
// tomorrow, spread over 50 recipient domains and 10 senders so that the list filters have something to select.
// The daemon must not run (the database is locked while it does).
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"ptrelay/queue"
)

func main() {
	dir := flag.String("dir", "", "the daemon's data_dir")
	count := flag.Int("count", 10000, "messages the queue should hold")
	size := flag.Int("size", 2048, "body bytes per message")
	workers := flag.Int("workers", 32, "concurrent writers (they share commits)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: queuefill -dir DATA_DIR -count N [-size BYTES] [-workers W]")
		os.Exit(2)
	}
	if err := fill(*dir, *count, *size, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "queuefill:", err)
		os.Exit(1)
	}
}

func fill(dir string, count, size, workers int) error {
	s, err := queue.Open(queue.Options{Dir: dir})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := postpone(s, workers); err != nil {
		return err
	}
	st, err := s.Stats()
	if err != nil {
		return err
	}
	todo := int64(count - st.Messages)
	if todo <= 0 {
		return nil
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > todo {
					return
				}
				if err := add(s, int(i)+st.Messages, size); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// postpone moves every due recipient's next attempt to tomorrow.
func postpone(s *queue.Store, workers int) error {
	later := time.Now().Add(24 * time.Hour)
	for {
		due, err := s.Due(time.Now(), 4096)
		if err != nil || len(due) == 0 {
			return err
		}
		ids := make(chan string)
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for id := range ids {
					errs <- s.Update(id, func(m *queue.Message, _ *queue.Tx) error {
						for i := range m.Recipients {
							if r := &m.Recipients[i]; r.State == queue.StateQueued || r.State == queue.StateDeferred {
								r.NextAttempt = later
							}
						}
						return nil
					})
				}
			})
		}
		var firstErr error
		go func() {
			for _, m := range due {
				ids <- m.ID
			}
			close(ids)
		}()
		go func() { wg.Wait(); close(errs) }()
		for err := range errs {
			if firstErr == nil && err != nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return firstErr
		}
	}
}

func add(s *queue.Store, n, size int) error {
	w, err := s.NewWriter()
	if err != nil {
		return err
	}
	if _, err := w.Write(body(n, size)); err != nil {
		return err
	}
	from := "sender" + strconv.Itoa(n%10) + "@example.test"
	to := "user" + strconv.Itoa(n) + "@d" + strconv.Itoa(n%50) + ".example"
	id, err := w.Commit(queue.Envelope{From: from, ClientAddr: "127.0.0.1:40000", ClientHelo: "bench.test"},
		[]queue.Recipient{{Addr: to, State: queue.StateQueued}})
	if err != nil {
		return err
	}
	now := time.Now()
	if err := s.Update(id, func(m *queue.Message, _ *queue.Tx) error {
		r := &m.Recipients[0]
		r.State, r.Attempts, r.NextAttempt = queue.StateActive, r.Attempts+1, now.Add(24*time.Hour)
		return nil
	}); err != nil {
		return err
	}
	return s.Update(id, func(m *queue.Message, _ *queue.Tx) error {
		r := &m.Recipients[0]
		r.State = queue.StateDeferred
		r.History = append(r.History, queue.Attempt{At: now, Route: "smarthost", Relay: "127.0.0.1[127.0.0.1]:9",
			Text: "connect to 127.0.0.1[127.0.0.1]:9: connection refused", Outcome: "deferred"})
		return nil
	})
}

// body is a plain message of size bytes with the headers the relay would have prepended.
func body(n, size int) []byte {
	b := fmt.Appendf(nil, "Received: from bench.test (127.0.0.1) by ptrelay.bench.test with ESMTP id %d\r\n"+
		"From: <sender@example.test>\r\nTo: <user%d@example.org>\r\nSubject: queue-scale %d\r\n"+
		"Message-ID: <%d@bench.test>\r\n\r\n", n, n, n, n)
	for len(b) < size {
		b = append(b, "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"...)
	}
	return b[:size]
}
