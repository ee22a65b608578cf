package mtasts

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// The cache's rules (RFC 8461 3.3, 5.1):
//
//   - A policy fetched is kept until max_age runs out, in the queue database, so that a restart or an HTTPS
//     outage at the domain does not lose it: an attacker who blocks the policy host must not turn enforce off.
//   - While a policy is held, the TXT record is looked at again at most every TXTRecheck; a new id means a new
//     policy, fetched at once. The TXT record missing, or its lookup failing, keeps the policy.
//   - Every policy held is fetched again after RefreshAfter (Maintain), which extends its life.
//   - A fetch that fails is not tried again for the same id before FailureBackoff; meanwhile the policy held,
//     if any, applies, else none.
//   - A domain without MTA-STS (no record, or the policy cannot be fetched and none is held) is remembered, in
//     memory only, for FailureBackoff.
//   - A policy not used for Unused is dropped (Maintain).
const (
	TXTRecheck     = time.Hour
	RefreshAfter   = 24 * time.Hour
	FailureBackoff = 5 * time.Minute
	Unused         = 180 * 24 * time.Hour
	// useEvery is how seldom the last use is written: a record of each use would be a disk write per delivery.
	useEvery = time.Hour
)

// Entry is what the cache holds for one domain.
type Entry struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id,omitempty"`     // the TXT record's id of the policy held
	Policy  *Policy   `json:"policy,omitempty"` // nil: no policy (a domain without MTA-STS, remembered a while)
	Text    string    `json:"text,omitempty"`   // the policy as fetched
	Fetched time.Time `json:"fetched,omitzero"`
	Expires time.Time `json:"expires,omitzero"` // Fetched + max_age
	LastUse time.Time `json:"last_use,omitzero"`
	// TXTChecked is the last look at the TXT record while the policy was held.
	TXTChecked time.Time `json:"txt_checked,omitzero"`
	// RetryAfter: no fetch of RetryID (or, with no policy, no look at all) before this time.
	RetryAfter time.Time `json:"retry_after,omitzero"`
	RetryID    string    `json:"retry_id,omitempty"`
	LastError  string    `json:"last_error,omitempty"` // why the last look or fetch failed
}

// Valid reports a policy held and not expired at now.
func (e *Entry) Valid(now time.Time) bool { return e.Policy != nil && now.Before(e.Expires) }

// Store keeps entries that hold a policy. QueueStore keeps them in the queue database; MemStore in memory.
type Store interface {
	Load(domain string) (Entry, bool, error)
	Save(Entry) error
	Delete(domain string) error
	All() ([]Entry, error)
}

// Result is the policy that applies to a domain now.
type Result struct {
	Policy *Policy // nil: the domain has no MTA-STS policy (or none could be had): deliver as without one
	ID     string
	// Err is why no policy could be had although the domain publishes an MTA-STS record (fetch failed), for
	// the log and TLS-RPT; Policy is nil then.
	Err error
}

// Options configure a Cache.
type Options struct {
	Store Store
	// LookupTXT returns the TXT records of a name (dnscheck.Resolver.LookupTXT): an error wrapping
	// dnscheck's ErrTemporary is temporary, any other means no record.
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// Temporary reports a TXT lookup error that is temporary (dnscheck.ErrTemporary).
	Temporary func(error) bool
	Fetch     func(ctx context.Context, domain string) (string, *Policy, error)
	Now       func() time.Time // nil: time.Now
	Log       *slog.Logger     // nil: slog.Default()
	// OnFetch, when set, is told of every fetch and its error (nil on success): TLS-RPT counts and metrics.
	OnFetch func(domain string, err error)
}

// Cache finds and keeps MTA-STS policies. It is safe for concurrent use; lookups of one domain are serialised
// so that simultaneous deliveries to it fetch once.
type Cache struct {
	o     Options
	locks [64]sync.Mutex
	mu    sync.Mutex
	none  map[string]Entry // domains without a policy, remembered until RetryAfter (memory only)
}

// NewCache returns a cache working as Options say.
func NewCache(o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Temporary == nil {
		o.Temporary = func(error) bool { return false }
	}
	return &Cache{o: o, none: map[string]Entry{}}
}

func (c *Cache) lock(domain string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(domain))
	m := &c.locks[h.Sum32()%uint32(len(c.locks))]
	m.Lock()
	return m.Unlock
}

// ErrTemporary: the TXT record could not be looked up and no policy is held: the delivery must wait (a
// policy may exist, and going on without it could be the downgrade an attacker wants).
var ErrTemporary = errors.New("the MTA-STS record could not be looked up")

// Get returns the policy that applies to domain now, looking it up or fetching it as the cache's rules say.
// The error is ErrTemporary (wrapped) or a storage error; either way the delivery waits.
func (c *Cache) Get(ctx context.Context, domain string) (Result, error) {
	domain = canon(domain)
	defer c.lock(domain)()
	now := c.o.Now()
	e, ok, err := c.o.Store.Load(domain)
	if err != nil {
		return Result{}, err
	}
	if ok && e.Valid(now) {
		changed := false
		if now.Sub(e.TXTChecked) >= TXTRecheck {
			e.TXTChecked, changed = now, true
			c.recheck(ctx, &e, now)
		}
		if now.Sub(e.LastUse) >= useEvery {
			e.LastUse, changed = now, true
		}
		if changed {
			if err := c.o.Store.Save(e); err != nil {
				c.o.Log.Warn("cannot store the MTA-STS policy state", "domain", domain, "err", err)
			}
		}
		return Result{Policy: e.Policy, ID: e.ID}, nil
	}
	if n, held := c.negative(domain, now); held {
		return n, nil
	}
	id, err := c.record(ctx, domain)
	switch {
	case err != nil && c.o.Temporary(err):
		return Result{}, err
	case err != nil:
		c.remember(domain, Entry{Domain: domain, RetryAfter: now.Add(FailureBackoff), LastError: err.Error()})
		if ok {
			_ = c.o.Store.Delete(domain) // expired, and no longer published
		}
		return Result{}, nil
	}
	ne, fetchErr := c.fetch(ctx, domain, id, now)
	if fetchErr != nil {
		c.remember(domain, Entry{Domain: domain, RetryAfter: now.Add(FailureBackoff), RetryID: id, LastError: fetchErr.Error()})
		if ok {
			_ = c.o.Store.Delete(domain) // expired: nothing left to apply
		}
		return Result{Err: fetchErr}, nil
	}
	ne.LastUse = now
	if err := c.o.Store.Save(ne); err != nil {
		c.o.Log.Warn("cannot store the MTA-STS policy", "domain", domain, "err", err)
	}
	return Result{Policy: ne.Policy, ID: ne.ID}, nil
}

// recheck looks at the TXT record of a domain whose policy is held, and fetches the new policy when its id
// changed (unless that id failed within FailureBackoff). A failure keeps the policy held.
func (c *Cache) recheck(ctx context.Context, e *Entry, now time.Time) {
	id, err := c.record(ctx, e.Domain)
	if err != nil || id == e.ID || (id == e.RetryID && now.Before(e.RetryAfter)) {
		return
	}
	c.refetch(ctx, e, id, now)
}

// refetch replaces e's policy by the one published under id, or notes the failure and keeps it.
func (c *Cache) refetch(ctx context.Context, e *Entry, id string, now time.Time) bool {
	ne, err := c.fetch(ctx, e.Domain, id, now)
	if err != nil {
		e.RetryID, e.RetryAfter, e.LastError = id, now.Add(FailureBackoff), err.Error()
		if e.Policy == nil {
			return false
		}
		c.o.Log.Warn("MTA-STS policy could not be fetched again; the policy held still applies", "domain", e.Domain,
			"id", id, "held", e.ID, "expires", e.Expires.Format(time.RFC3339), "err", err)
		return false
	}
	ne.LastUse, ne.TXTChecked = e.LastUse, now
	*e = ne
	return true
}

// record looks up the MTA-STS record of domain and returns its id.
func (c *Cache) record(ctx context.Context, domain string) (string, error) {
	txts, err := c.o.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if c.o.Temporary(err) {
			return "", errors.Join(ErrTemporary, err)
		}
		return "", ErrNoRecord
	}
	return FindRecord(txts)
}

// fetch gets the policy published under id as a new entry.
func (c *Cache) fetch(ctx context.Context, domain, id string, now time.Time) (Entry, error) {
	text, p, err := c.o.Fetch(ctx, domain)
	if c.o.OnFetch != nil {
		c.o.OnFetch(domain, err)
	}
	if err != nil {
		return Entry{}, err
	}
	c.forget(domain)
	return Entry{Domain: domain, ID: id, Policy: p, Text: text, Fetched: now, Expires: now.Add(p.MaxAge), TXTChecked: now}, nil
}

// Refresh looks for a new policy of domain now, whatever the timers say: before a message that its policy
// kept from delivery is bounced (RFC 8461 5.1: not before checking for a new policy). It reports whether a
// different policy (a new id) now applies.
func (c *Cache) Refresh(ctx context.Context, domain string) (bool, error) {
	domain = canon(domain)
	defer c.lock(domain)()
	now := c.o.Now()
	e, ok, err := c.o.Store.Load(domain)
	if err != nil {
		return false, err
	}
	id, err := c.record(ctx, domain)
	if err != nil {
		if c.o.Temporary(err) {
			return false, err
		}
		return false, nil
	}
	if ok && e.Valid(now) && id == e.ID {
		e.TXTChecked = now
		return false, c.o.Store.Save(e)
	}
	if !ok || !e.Valid(now) {
		e = Entry{Domain: domain}
	}
	old := e.ID
	if !c.refetch(ctx, &e, id, now) {
		return false, nil
	}
	e.LastUse = now
	return e.ID != old, c.o.Store.Save(e)
}

// Maintain is the periodic pass (hourly): policies fetched more than RefreshAfter ago and used within Unused
// are fetched again (a failure keeps them until they expire); policies unused for Unused, and expired ones
// that could not be renewed, are dropped; domains remembered without a policy are forgotten once due.
func (c *Cache) Maintain(ctx context.Context) {
	now := c.o.Now()
	c.mu.Lock()
	for d, e := range c.none {
		if !now.Before(e.RetryAfter) {
			delete(c.none, d)
		}
	}
	c.mu.Unlock()
	all, err := c.o.Store.All()
	if err != nil {
		c.o.Log.Warn("cannot read the MTA-STS policies", "err", err)
		return
	}
	for _, e := range all {
		if ctx.Err() != nil {
			return
		}
		c.maintain(ctx, e.Domain, now)
	}
}

func (c *Cache) maintain(ctx context.Context, domain string, now time.Time) {
	defer c.lock(domain)()
	e, ok, err := c.o.Store.Load(domain)
	if err != nil || !ok {
		return
	}
	if now.Sub(e.LastUse) >= Unused {
		c.o.Log.Info("MTA-STS policy dropped: unused", "domain", domain, "last_use", e.LastUse.Format(time.RFC3339))
		_ = c.o.Store.Delete(domain)
		return
	}
	if now.Sub(e.Fetched) < RefreshAfter || (e.RetryID != "" && now.Before(e.RetryAfter)) {
		return
	}
	id, err := c.record(ctx, domain)
	if err == nil {
		c.refetch(ctx, &e, id, now)
	} else if !c.o.Temporary(err) {
		e.LastError = "the MTA-STS record is gone; the policy held applies until it expires"
	}
	if !e.Valid(now) {
		c.o.Log.Info("MTA-STS policy dropped: expired", "domain", domain, "err", e.LastError)
		_ = c.o.Store.Delete(domain)
		return
	}
	if err := c.o.Store.Save(e); err != nil {
		c.o.Log.Warn("cannot store the MTA-STS policy", "domain", domain, "err", err)
	}
}

// List returns the policies held (domain "": all), and the domains remembered without one, by domain.
func (c *Cache) List(domain string) ([]Entry, error) {
	domain = canon(domain)
	all, err := c.o.Store.All()
	if err != nil {
		return nil, err
	}
	now := c.o.Now()
	c.mu.Lock()
	for _, e := range c.none {
		if now.Before(e.RetryAfter) {
			all = append(all, e)
		}
	}
	c.mu.Unlock()
	out := all[:0]
	for _, e := range all {
		if domain == "" || e.Domain == domain {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, nil
}

// Flush drops what is held for domain ("" : everything), so the next delivery looks it up afresh: for a
// partner that fixed a broken policy without changing its id. It returns how many entries went.
func (c *Cache) Flush(domain string) (int, error) {
	domain = canon(domain)
	n := 0
	c.mu.Lock()
	for d := range c.none {
		if domain == "" || d == domain {
			delete(c.none, d)
			n++
		}
	}
	c.mu.Unlock()
	m, err := FlushStore(c.o.Store, domain)
	return n + m, err
}

// FlushStore drops the stored policies of domain ("" : all) from s: what `ptrelay mtasts flush` does when
// the daemon is not running.
func FlushStore(s Store, domain string) (int, error) {
	all, err := s.All()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range all {
		if domain == "" || e.Domain == canon(domain) {
			if err := s.Delete(e.Domain); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// negative returns the remembered "no policy" of domain while it holds.
func (c *Cache) negative(domain string, now time.Time) (Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.none[domain]
	if !ok || !now.Before(e.RetryAfter) {
		return Result{}, false
	}
	var err error
	if e.RetryID != "" {
		err = errors.New(e.LastError)
	}
	return Result{Err: err}, true
}

// maxRemembered bounds the domains remembered without a policy.
const maxRemembered = 10000

func (c *Cache) remember(domain string, e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.none) >= maxRemembered {
		clear(c.none) // rare: a burst of distinct domains; forgetting costs one TXT lookup each
	}
	c.none[domain] = e
}

func (c *Cache) forget(domain string) {
	c.mu.Lock()
	delete(c.none, domain)
	c.mu.Unlock()
}

func canon(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }
