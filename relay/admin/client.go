package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"ptrelay/queue"
)

// ErrNoDaemon: nothing answers on the admin socket (no socket file, or a stale one). The CLI then opens the
// queue itself. Other Dial errors (permission denied) mean a daemon may well be running.
var ErrNoDaemon = errors.New("no daemon answers on the admin socket")

// Client talks to a running daemon's admin socket. It implements Queue.
type Client struct {
	hc   *http.Client
	path string
}

// Dial connects to the admin socket at socketPath. It fails at once, wrapping ErrNoDaemon, when no daemon
// listens there; it does not wait for one.
func Dial(socketPath string) (*Client, error) {
	c, err := net.DialTimeout("unix", socketPath, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s): %v", ErrNoDaemon, socketPath, err)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("admin socket %s: %w: it is the service's: run this command as root (sudo), or "+
				"as a member of the group named by admin.socket_group", socketPath, err)
		}
		return nil, fmt.Errorf("admin socket %s: %w", socketPath, err)
	}
	c.Close()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	return &Client{
		path: socketPath,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", socketPath)
			},
			// No overall timeout: a body may be large. A daemon that accepts but never answers is bounded here.
			ResponseHeaderTimeout: 60 * time.Second,
			MaxIdleConns:          1,
		}},
	}, nil
}

// Close releases the connection.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Status returns the daemon's status.
func (c *Client) Status() (Status, error) {
	var st Status
	err := c.getJSON("/v1/status", &st)
	return st, err
}

// Scan reads the daemon's listing line by line and hands each entry to fn as it arrives: memory is one entry,
// whatever the queue's size. A listing that ends without its last line (the daemon stopped) is an error.
func (c *Client) Scan(f queue.Filter, fn func(queue.Item) error) (queue.Page, error) {
	var page queue.Page
	path := "/v1/messages"
	if q := encodeFilter(f).Encode(); q != "" {
		path += "?" + q
	}
	resp, err := c.do("GET", path, nil)
	if err != nil {
		return page, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		raw, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return page, fmt.Errorf("admin socket: the listing stopped before its end (did the daemon stop?)")
		}
		if err != nil {
			return page, fmt.Errorf("admin socket: reading the listing: %v", err)
		}
		it, end, err := decodeListLine(raw)
		switch {
		case err != nil:
			return page, err
		case end != nil:
			return *end, nil
		}
		if it.Message != nil {
			page.Count++
			page.Last = it.Message.ID
		}
		if err := fn(it); err != nil {
			return page, err
		}
	}
}

// decodeListLine decodes one line of a listing: an entry, the end, or the daemon's error. A message line is
// decoded once, straight into the Message (a general decoder of the line would scan it three times, a good
// part of a 100,000-message listing's time), and its JSON kept for a JSON listing.
func decodeListLine(raw []byte) (queue.Item, *queue.Page, error) {
	line := bytes.TrimSuffix(raw, []byte("\n"))
	if msg, ok := bytes.CutPrefix(line, []byte(messageLinePrefix)); ok && bytes.HasSuffix(msg, []byte("}")) {
		msg = msg[:len(msg)-1]
		m := new(queue.Message)
		if err := json.Unmarshal(msg, m); err != nil {
			return queue.Item{}, nil, fmt.Errorf("admin socket: bad message in the listing: %v", err)
		}
		return queue.Item{Message: m, JSON: msg}, nil, nil
	}
	var l listLine
	if err := json.Unmarshal(line, &l); err != nil {
		return queue.Item{}, nil, fmt.Errorf("admin socket: bad listing line: %v", err)
	}
	switch {
	case l.End != nil:
		return queue.Item{}, l.End, nil
	case l.Error != "":
		return queue.Item{}, nil, fromWire(l.wireError)
	}
	it := queue.Item{Message: l.Message, Corrupt: l.Corrupt} // a damaged record, or {}: the end of a batch
	if l.Message != nil {
		it.JSON, _ = json.Marshal(l.Message)
	}
	return it, nil, nil
}

func (c *Client) Get(id string) (*queue.Message, error) {
	var m queue.Message
	if err := c.getJSON("/v1/messages/"+url.PathEscape(id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Body streams the stored body; the caller closes it.
func (c *Client) Body(id string) (io.ReadCloser, error) {
	resp, err := c.do("GET", "/v1/messages/"+url.PathEscape(id)+"/body", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *Client) Corrupt() ([]queue.CorruptRecord, error) {
	var recs []queue.CorruptRecord
	err := c.getJSON("/v1/corrupt", &recs)
	return recs, err
}

func (c *Client) Delete(sel queue.Selector) (int, error)  { return c.verb("delete", sel) }
func (c *Client) Hold(sel queue.Selector) (int, error)    { return c.verb("hold", sel) }
func (c *Client) Release(sel queue.Selector) (int, error) { return c.verb("release", sel) }
func (c *Client) Retry(sel queue.Selector) (int, error)   { return c.verb("retry", sel) }
func (c *Client) Bounce(sel queue.Selector) (int, error)  { return c.verb("bounce", sel) }

// verb returns the count even with an error: the queue handles the IDs it knows and reports the others.
func (c *Client) verb(name string, sel queue.Selector) (int, error) {
	req, err := json.Marshal(selection{IDs: sel.IDs, All: sel.All})
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Post("http://ptrelay/v1/"+name, "application/json", bytes.NewReader(req))
	if err != nil {
		return 0, c.transportError(err)
	}
	defer resp.Body.Close()
	var res verbResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return 0, fmt.Errorf("admin socket: bad answer to %s (%s): %v", name, resp.Status, err)
	}
	if res.Error == "" && resp.StatusCode != http.StatusOK {
		return res.Count, fmt.Errorf("admin socket: %s answered %s", name, resp.Status)
	}
	return res.Count, fromWire(res.wireError)
}

func (c *Client) getJSON(path string, v any) error {
	resp, err := c.do("GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("admin socket: bad answer to %s: %v", path, err)
	}
	return nil
}

// do sends a request and turns a non-200 answer into the daemon's error.
func (c *Client) do(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://ptrelay"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var we wireError
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&we); err != nil || we.Error == "" {
		return nil, fmt.Errorf("admin socket: %s %s answered %s", method, path, resp.Status)
	}
	return nil, fromWire(we)
}

func (c *Client) transportError(err error) error {
	return fmt.Errorf("admin socket %s: %w", c.path, err)
}
