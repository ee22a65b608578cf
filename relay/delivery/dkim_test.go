package delivery

import (
	"bytes"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"ptrelay/config"
	"ptrelay/queue"
	"ptrelay/relay/dkim"
)

// dkimKeys writes one Ed25519 key per selector for sender.test and returns the [dkim] keys and a lookup
// function that publishes their records (what a receiver's DNS would answer).
func dkimKeys(t *testing.T, selectors ...string) ([]config.DKIMKey, func(string) ([]string, error)) {
	t.Helper()
	dir := t.TempDir()
	records := map[string]string{}
	var keys []config.DKIMKey
	for _, sel := range selectors {
		k, err := dkim.Generate("ed25519", 0)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, sel+".pem")
		if err := dkim.WriteKeyFile(p, k); err != nil {
			t.Fatal(err)
		}
		rec, err := dkim.RecordOf(sel+"._domainkey.sender.test", k.Public())
		if err != nil {
			t.Fatal(err)
		}
		records[rec.Name] = rec.Value
		keys = append(keys, config.DKIMKey{Domain: "sender.test", Selector: sel, PrivateKeyFile: p})
	}
	return keys, func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, io.EOF
	}
}

// withSigner installs settings whose DKIM signer has keys (what the daemon does with dkim.Load).
func withSigner(t *testing.T, s *Scheduler, keys []config.DKIMKey) {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "relay.sender.test"
	cfg.DKIM.Keys = keys
	signer, err := dkim.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := *s.cfg.Load()
	st.DKIM = signer
	s.cfg.Store(&st)
	s.Kick()
}

// signatures returns the s= of each DKIM signature of data that verifies; it fails the test for one that does not.
func verifiedSelectors(t *testing.T, data []byte, lookup func(string) ([]string, error)) []string {
	t.Helper()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(data), &msgauth.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	var sels []string
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("signature of %s does not verify: %v\n%s", v.Domain, v.Err, data)
		}
	}
	for _, m := range selectorTag.FindAllSubmatch(data, -1) {
		sels = append(sels, string(m[1]))
	}
	if len(sels) != len(vs) {
		t.Fatalf("%d selectors in %d signatures", len(sels), len(vs))
	}
	return sels
}

var selectorTag = regexp.MustCompile(`[;\s]s=([^;\s]+);`)

type dkimEvents struct {
	mu     sync.Mutex
	signed int
	why    []string
}

func (e *dkimEvents) add(signed bool, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if signed {
		e.signed++
	} else {
		e.why = append(e.why, reason)
	}
}

// The message each attempt sends is signed after ptrelay's headers, the body byte for byte as stored, SIZE=
// counting the signature; mail of a domain without a key goes out unsigned and is counted with its reason.
func TestOutgoing_DKIMSigned(t *testing.T) {
	f, port, dns := fakeMX(t, nil)
	st := openStore(t, t.TempDir())
	keys, lookup := dkimKeys(t, "s1")
	body := msgBody("signed")
	put(t, st, queue.Envelope{From: "a@sender.test"}, body, "b@dest.test")
	put(t, st, queue.Envelope{From: "x@other.test"}, strings.Replace(msgBody("unsigned"), "a@sender.test", "x@other.test", 1), "c@dest.test")
	ev := &dkimEvents{}
	_, rec, _ := runWith(t, testConfig(port), st, resolver(t, dns.Addr()), Options{}, func(s *Scheduler) {
		s.obs.OnDKIM = ev.add
		withSigner(t, s, keys)
	})
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 2 })
	var signed, unsigned fakeMsg
	for _, m := range f.messages() {
		if m.To[0] == "b@dest.test" {
			signed = m
		} else {
			unsigned = m
		}
	}
	sig, rest, ok := bytes.Cut(signed.Data, []byte("\r\n"+body[:len("From:")]))
	if !ok || !bytes.HasPrefix(sig, []byte("DKIM-Signature: ")) || string(rest) != body[len("From:"):] {
		t.Fatalf("peer got %q\nwant a DKIM-Signature in front of the stored message %q", signed.Data, body)
	}
	if sels := verifiedSelectors(t, signed.Data, lookup); len(sels) != 1 || sels[0] != "s1" {
		t.Errorf("signatures %v", sels)
	}
	if signed.Size != int64(len(signed.Data)) {
		t.Errorf("SIZE=%d, sent %d bytes", signed.Size, len(signed.Data))
	}
	if bytes.Contains(unsigned.Data, []byte("DKIM-Signature")) {
		t.Errorf("mail of a domain without a key was signed:\n%s", unsigned.Data)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.signed != 1 || len(ev.why) != 1 || ev.why[0] != "no_key" {
		t.Errorf("OnDKIM: %d signed, unsigned %v", ev.signed, ev.why)
	}
}

// The signature is made per attempt and never stored: mail that waited in the queue across a key change goes
// out signed with the new key.
func TestOutgoing_DKIMNewKeyForQueuedMail(t *testing.T) {
	firstDone := make(chan struct{})
	f, port, dns := fakeMX(t, func(f *fakePeer) {
		f.dataErr = func(n int) error {
			if n == 1 {
				close(firstDone)
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
			}
			return nil
		}
	})
	st := openStore(t, t.TempDir())
	keys, lookup := dkimKeys(t, "old", "new")
	id := put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("rotate"), "b@dest.test")
	cfg := testConfig(port)
	// No retry by itself: the test makes the mail due again once the new key is in place.
	cfg.Queue.RetryMin, cfg.Queue.RetryMax, cfg.Queue.Lifetime = config.Duration(time.Hour), config.Duration(time.Hour), config.Duration(2*time.Hour)
	s, rec, _ := runWith(t, cfg, st, resolver(t, dns.Addr()), Options{}, func(s *Scheduler) {
		withSigner(t, s, keys[:1])
	})
	<-firstDone
	waitFor(t, "the deferral", 10*time.Second, func() bool { return rec.count(Deferred) == 1 })
	rc, err := st.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	if bytes.Contains(stored, []byte("DKIM-Signature")) {
		t.Fatalf("the signature was stored in the queue:\n%s", stored)
	}
	withSigner(t, s, keys[1:]) // a reload with the new key
	if _, err := st.Retry(queue.Selector{IDs: []string{id}}); err != nil {
		t.Fatal(err)
	}
	s.Kick()
	waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
	msgs := f.messages()
	if sels := verifiedSelectors(t, msgs[len(msgs)-1].Data, lookup); len(sels) != 1 || sels[0] != "new" {
		t.Errorf("signed with %v, want the new key", sels)
	}
}
