package queue

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Spool files: a body larger than InlineMax lives in spool/<ID>. It is written to spool/tmp-* while the client
// sends, then fsync'd, renamed to its ID and the directory fsync'd (once per commit batch, commit.go), all
// before the bbolt transaction that makes the record visible. A crash before the commit leaves a temp file or an
// orphan spool/<ID> with no record; the next Open removes both (recover.go). A spool file is removed only after
// the transaction that removed its record has committed.

const tmpPrefix = "tmp-"

func (s *Store) spoolPath(id string) string { return filepath.Join(s.spool, id) }

func isTempName(name string) bool { return strings.HasPrefix(name, tmpPrefix) }

// syncDir fsyncs a directory, so renames and removals in it survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeSpoolFile stores body as spool/<id> durably (file and directory fsync'd). Used for large bodies that
// arrive in memory (Tx.Enqueue); streamed bodies go through Writer.
func (s *Store) writeSpoolFile(id string, body []byte) error {
	f, err := os.CreateTemp(s.spool, tmpPrefix+"*")
	if err != nil {
		return storageErr("spool create", err)
	}
	tmp := f.Name()
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.spoolPath(id))
	}
	if err != nil {
		os.Remove(tmp)
		return storageErr("spool write", err)
	}
	if err := syncDir(s.spool); err != nil {
		os.Remove(s.spoolPath(id))
		return storageErr("sync spool directory", err)
	}
	return nil
}

// removeSpool deletes a body file whose record is gone. A failure only leaves an orphan that the next Open
// removes, so it is logged, not returned.
func (s *Store) removeSpool(id string) {
	if err := os.Remove(s.spoolPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("cannot remove spool file", "id", id, "err", err)
	}
}

// Writer receives one message body. Bodies larger than InlineMax spill to a spool file as they are written,
// so memory stays bounded. A Writer is used by one goroutine. Every error it returns wraps ErrStorage, except
// Commit's complaints about its arguments; after any error nothing of the message is left on disk.
type Writer struct {
	s    *Store
	buf  []byte // the body while it fits InlineMax
	f    *os.File
	bw   *bufio.Writer
	tmp  string
	size int64
	err  error // sticky: the first failure
	done bool  // committed or aborted
}

var errWriterDone = errors.New("queue: writer already committed or aborted")

// NewWriter starts a new message body.
func (s *Store) NewWriter() (*Writer, error) {
	if s.readOnly {
		return nil, ErrReadOnly
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, storageErr("new message", errClosed)
	}
	return &Writer{s: s}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errWriterDone
	}
	if w.f == nil && int64(len(w.buf))+int64(len(p)) <= w.s.inlineMax {
		if w.buf == nil {
			if b, ok := w.s.bodyBufs.Get().(*[]byte); ok {
				w.buf = (*b)[:0]
			}
		}
		w.buf = append(w.buf, p...)
		w.size += int64(len(p))
		return len(p), nil
	}
	if w.f == nil {
		if err := w.spill(); err != nil {
			return 0, w.fail(err)
		}
	}
	n, err := w.bw.Write(p)
	w.size += int64(n)
	if err != nil {
		return n, w.fail(storageErr("spool write", err))
	}
	return n, nil
}

// spill moves the body from memory to a temp file in the spool directory (same file system, so the final
// rename is atomic).
func (w *Writer) spill() error {
	f, err := os.CreateTemp(w.s.spool, tmpPrefix+"*")
	if err != nil {
		return storageErr("spool create", err)
	}
	w.f, w.tmp = f, f.Name()
	w.bw = bufio.NewWriterSize(f, 64<<10)
	if _, err := w.bw.Write(w.buf); err != nil {
		return storageErr("spool write", err)
	}
	w.releaseBuf()
	return nil
}

func (w *Writer) fail(err error) error {
	w.err = err
	w.discard()
	return err
}

// discard drops whatever the writer holds, in memory and on disk.
func (w *Writer) discard() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.tmp)
		w.f, w.bw = nil, nil
	}
	w.releaseBuf()
}

// releaseBuf returns the body buffer to the store's pool; only call it when nothing can still read it.
func (w *Writer) releaseBuf() {
	if w.buf != nil && int64(cap(w.buf)) <= 2*w.s.inlineMax { // append may have grown it past inlineMax
		b := w.buf[:0]
		w.s.bodyBufs.Put(&b)
	}
	w.buf = nil
}

// Size is the number of body bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Abort discards the body. Safe after Commit (no-op) and after a failure.
func (w *Writer) Abort() error {
	if !w.done {
		w.done = true
		w.discard()
	}
	return nil
}

// finishSpool makes the temp file durable under the message's ID. The directory fsync follows in the commit
// loop, before the transaction.
func (w *Writer) finishSpool(id string) error {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f, w.bw = nil, nil
	if err == nil {
		err = os.Rename(w.tmp, w.s.spoolPath(id))
	}
	if err != nil {
		os.Remove(w.tmp)
		return storageErr("spool finish", err)
	}
	return nil
}
