package queue

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkCommit measures accepted messages per second (msg/s: each one fsync'd before Commit returns) for
// body sizes, body placement (inline in bbolt vs spool file) and 1 or 20 concurrent writers. It chose
// DefaultInlineMax; the figures are in the comment on that constant. Run:
//
//	go test -run '^$' -bench 'Commit|BoltUpdate' -benchtime 3s ./queue/
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 256 << 10, 1 << 20} {
		for _, mode := range []string{"inline", "spool"} {
			for _, writers := range []int{1, 20} {
				name := fmt.Sprintf("size=%dKiB/%s/writers=%d", size>>10, mode, writers)
				b.Run(name, func(b *testing.B) {
					inlineMax := int64(-1)
					if mode == "inline" {
						inlineMax = 1 << 30
					}
					benchCommit(b, size, inlineMax, writers)
				})
			}
		}
	}
}

// BenchmarkCommitDefault is the shape the inbound side sees: default InlineMax, 4 KiB bodies.
func BenchmarkCommitDefault(b *testing.B) {
	for _, writers := range []int{1, 20} {
		b.Run(fmt.Sprintf("size=4KiB/writers=%d", writers), func(b *testing.B) { benchCommit(b, 4<<10, 0, writers) })
	}
}

func benchCommit(b *testing.B, size int, inlineMax int64, writers int) {
	s, err := Open(Options{Dir: b.TempDir(), InlineMax: inlineMax})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := body("bench", size)
	env := Envelope{From: "bench@example.test"}
	rs := rcpts("r@example.org")
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				w, err := s.NewWriter()
				for p := data; err == nil && len(p) > 0; { // 32 KiB pieces, as io.Copy hands them over
					n := min(len(p), 32<<10)
					_, err = w.Write(p[:n])
					p = p[n:]
				}
				if err == nil {
					_, err = w.Commit(env, rs)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// BenchmarkBoltUpdate is the reference: one plain bbolt Update (fsync'd) per 4 KiB value, one writer, with the
// same bbolt options as the Store.
func BenchmarkBoltUpdate(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "ref.db"), 0o600, &bolt.Options{
		Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	data := body("bench", 4<<10)
	g := idGen{now: time.Now}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(g.next()), data) })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
