package delivery

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"ptrelay/config"
	"ptrelay/queue"
)

// TestSmarthost_DKIMSafeHeaders: mail through a smart host with dkim_safe_headers (on by default for Amazon SES)
// is signed without Message-ID and Date in h=, so that the host's rewriting of them does not break the
// signature; through another host they are signed.
func TestSmarthost_DKIMSafeHeaders(t *testing.T) {
	hFields := regexp.MustCompile(`(?i)\bh=([^;]+)`)
	for _, safe := range []config.AutoBool{config.AutoBoolTrue, config.AutoBoolAuto} {
		t.Run(string(safe), func(t *testing.T) {
			f := startFake(t, "127.0.0.1:0", nil)
			keys, lookup := dkimKeys(t, "s1")
			st := openStore(t, t.TempDir())
			put(t, st, queue.Envelope{From: "a@sender.test"}, msgBody("ses"), "b@dest.test")
			cfg := shConfig(plainHost("ses", f.addr, func(h *config.Smarthost) { h.DKIMSafeHeaders = safe }))
			_, rec, _ := runWith(t, cfg, st, nil, Options{}, func(s *Scheduler) { withSigner(t, s, keys) })
			waitFor(t, "delivery", 10*time.Second, func() bool { return rec.count(Sent) == 1 })
			data := f.messages()[0].Data
			m := hFields.FindSubmatch(data)
			if m == nil {
				t.Fatalf("no signature with h=:\n%s", data)
			}
			h := strings.ToLower(strings.Join(strings.Fields(string(m[1])), ""))
			covered := strings.Contains(h, "message-id") || strings.Contains(h, "date")
			if covered == (safe == config.AutoBoolTrue) {
				t.Errorf("dkim_safe_headers %s: h=%s", safe, h)
			}
			verifiedSelectors(t, data, lookup)
		})
	}
}
