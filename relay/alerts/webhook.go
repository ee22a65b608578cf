package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"ptrelay/queue"
)

// Webhook delivery follows Standard Webhooks 1.0: headers webhook-id (the same on every retry, so receivers
// can drop duplicates), webhook-timestamp (Unix seconds of this attempt) and webhook-signature
// ("v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"); 2xx is success; 410 Gone means the receiver retired the
// URL; Retry-After is honoured. Pending deliveries live in the queue database, so a restart neither loses
// nor repeats them.

// WebhookRetries are the waits after the first, second, ... failed attempt; the last repeats until
// WebhookGiveUp after the first attempt.
var WebhookRetries = []time.Duration{5 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour}

const (
	// WebhookGiveUp: a notice not accepted within this time is dropped (and the channel reported failing).
	WebhookGiveUp = 24 * time.Hour
	// webhookTimeout bounds one POST (Standard Webhooks suggests 15-30 s).
	webhookTimeout = 20 * time.Second
	// maxRetryAfter caps a receiver's Retry-After.
	maxRetryAfter = 6 * time.Hour
)

// Sign returns the webhook-signature header value for one attempt.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// pendingHook is one webhook delivery not yet accepted.
type pendingHook struct {
	ID        string    `json:"id"`
	Event     Event     `json:"event"`
	Body      []byte    `json:"body"`
	Created   time.Time `json:"created"`
	Next      time.Time `json:"next"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
}

// webhookChannel POSTs each notice to alerts.webhook_url and retries from the queue database. One worker runs
// for the daemon's life; a reload changes its target (pending notices then go to the new URL).
type webhookChannel struct {
	mu       sync.Mutex
	url      string // "": no webhook configured; pending notices are dropped
	key      []byte // nil: unsigned
	hostname string
	version  string
	store    StateStore
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger
	kick     chan struct{}
	// report tells the manager the outcome of an attempt: ok, or the failure and whether it is final.
	report func(ok bool, detail string, event Event, final bool)
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: webhookTimeout,
		// Standard Webhooks: a redirect is a failure, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (c *webhookChannel) name() string { return "webhook" }

func (c *webhookChannel) setTarget(url string, key []byte, hostname string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.url, c.key, c.hostname = url, key, hostname
}

func (c *webhookChannel) target() (url string, key []byte, hostname string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url, c.key, c.hostname
}

// deliver stores one pending delivery per notice, due now, and wakes the worker.
func (c *webhookChannel) deliver(ns []Notice) {
	now := c.now()
	_, _, hostname := c.target()
	err := c.store.UpdateState(TableWebhook, func(t queue.StateTable) error {
		for _, n := range ns {
			if t.Get(n.ID) != nil {
				continue // already handed over (a round written twice around a crash)
			}
			b, err := json.Marshal(pendingHook{ID: n.ID, Event: n.Event, Body: renderPayload(n, hostname), Created: now, Next: now})
			if err != nil {
				return err
			}
			if err := t.Put(n.ID, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, n := range ns {
			c.report(false, "storing the notice for delivery: "+err.Error(), n.Event, true)
		}
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *webhookChannel) test(ctx context.Context, n Notice) ChannelResult {
	_, _, hostname := c.target()
	status, _, err := c.post(ctx, n.ID, renderPayload(n, hostname), c.now())
	switch {
	case err != nil:
		return ChannelResult{Channel: "webhook", Outcome: "failed", Detail: err.Error()}
	case status/100 != 2:
		return ChannelResult{Channel: "webhook", Outcome: "failed", Detail: "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)}
	}
	return ChannelResult{Channel: "webhook", Outcome: "sent", Detail: "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)}
}

// run delivers until ctx ends: each due delivery is attempted, then the worker sleeps until the next is due
// or deliver wakes it.
func (c *webhookChannel) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := c.runDue(ctx, c.now())
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(c.now()), 10*time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// runDue attempts every delivery due at now and returns when the next one is due (zero: none pending).
func (c *webhookChannel) runDue(ctx context.Context, now time.Time) time.Time {
	var all []pendingHook
	err := c.store.ViewState(TableWebhook, func(t queue.StateTable) error {
		return t.ForEach(func(_ string, v []byte) error {
			var p pendingHook
			if err := json.Unmarshal(v, &p); err == nil {
				all = append(all, p)
			}
			return nil
		})
	})
	if err != nil {
		c.log.Error("alerts: reading pending webhook deliveries", "err", err)
		return now.Add(time.Minute)
	}
	var next time.Time
	for _, p := range all {
		if ctx.Err() != nil {
			return next
		}
		if p.Next.After(now) {
			if next.IsZero() || p.Next.Before(next) {
				next = p.Next
			}
			continue
		}
		if keep := c.attempt(ctx, &p, now); keep && (next.IsZero() || p.Next.Before(next)) {
			next = p.Next
		}
	}
	return next
}

// attempt makes one POST of p and records the outcome; it reports whether p stays pending.
func (c *webhookChannel) attempt(ctx context.Context, p *pendingHook, now time.Time) bool {
	if url, _, _ := c.target(); url == "" {
		c.finish(p.ID)
		c.log.Warn("alerts: webhook notice dropped: alerts.webhook_url is no longer set", "id", p.ID, "event", string(p.Event))
		return false
	}
	status, retryAfter, err := c.post(ctx, p.ID, p.Body, now)
	p.Attempts++
	var detail string
	retry := true
	switch {
	case err != nil:
		detail = err.Error()
	case status/100 == 2:
		c.finish(p.ID)
		c.report(true, "HTTP "+strconv.Itoa(status), p.Event, true)
		return false
	case status == http.StatusGone:
		detail, retry = "HTTP 410 Gone: the receiver retired this URL; fix alerts.webhook_url", false
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status/100 == 5 || status/100 == 3:
		detail = "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	default:
		// Another 4xx: the receiver refuses this request (bad signature, unknown path); repeating it cannot help.
		detail, retry = "HTTP "+strconv.Itoa(status)+" "+http.StatusText(status)+": the receiver refuses the notice", false
	}
	p.LastError = detail
	wait := WebhookRetries[min(p.Attempts, len(WebhookRetries))-1]
	if retryAfter > 0 {
		wait = min(retryAfter, maxRetryAfter)
	}
	p.Next = now.Add(wait)
	if retry && p.Next.Sub(p.Created) > WebhookGiveUp {
		retry, detail = false, detail+"; gave up after "+span(now.Sub(p.Created))
	}
	if !retry {
		c.finish(p.ID)
		c.log.Error("alerts: webhook notice dropped", "id", p.ID, "event", string(p.Event), "attempts", p.Attempts, "err", detail)
		c.report(false, detail, p.Event, true)
		return false
	}
	c.log.Warn("alerts: webhook attempt failed; will retry", "id", p.ID, "attempt", p.Attempts, "next", p.Next, "err", detail)
	if b, err := json.Marshal(p); err == nil {
		if err := c.store.UpdateState(TableWebhook, func(t queue.StateTable) error { return t.Put(p.ID, b) }); err != nil {
			c.log.Error("alerts: recording a webhook retry", "id", p.ID, "err", err)
		}
	}
	c.report(false, detail, p.Event, false)
	return true
}

func (c *webhookChannel) finish(id string) {
	if err := c.store.UpdateState(TableWebhook, func(t queue.StateTable) error { return t.Delete(id) }); err != nil {
		c.log.Error("alerts: removing a finished webhook delivery", "id", id, "err", err)
	}
}

// post sends one attempt and returns the HTTP status and the Retry-After it asked for (0: none).
func (c *webhookChannel) post(ctx context.Context, id string, body []byte, now time.Time) (int, time.Duration, error) {
	target, key, _ := c.target()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ptrelay/"+c.version)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if key != nil {
		req.Header.Set("webhook-signature", Sign(key, id, now, body))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("POST %s: %w", redactURL(target), unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), now), nil
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3); 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return max(time.Duration(n)*time.Second, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redactURL keeps the scheme and host: chat webhooks carry their token in the path.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexAny(u[i+3:], "/?#"); j >= 0 {
			return u[:i+3+j] + "/…"
		}
	}
	return u
}

// unwrapURLError drops net/http's "Post <url>:" wrapper, whose URL may carry a token.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
