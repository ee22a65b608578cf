package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"ptrelay/dnscheck"
)

// rotateAfter is the age of a key file past which `ptrelay check` asks for a new key: M3AAWG advises rotating
// every six months, and at least once a year for small senders.
const rotateAfter = 365 * 24 * time.Hour

// Check returns the DKIM lines of `ptrelay check` for domain: per key of the domain, whether what DNS publishes
// at its selector verifies a probe message signed with the private key (pass, or fail with the fix), then the
// warnings (a record in testing mode, an old key, Ed25519 as the only key). A domain without a key gets one
// line saying its mail goes out unsigned. Keys should come from LoadEach: a key this process cannot read is
// still looked up in DNS.
//
// Failing lines are Blocking: mail signed with such a key fails DKIM at every receiver. A DNS lookup that could
// not finish is a temperror (unknown), never a failure.
func (s *Signer) Check(ctx context.Context, res dnscheck.Lookuper, domain string, now time.Time) []dnscheck.Check {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	keys := s.KeysFor(domain)
	if len(keys) == 0 {
		return []dnscheck.Check{{ID: "dkim:" + domain, Title: "DKIM signing for " + domain, Status: dnscheck.StatusFail,
			Detail: "no [[dkim.keys]] entry for " + domain + ": ptrelay sends its mail unsigned",
			Fix: "enable DKIM for " + domain + ": run `ptrelay dkim keygen -domain " + domain + " -selector ptr" +
				now.Format("2006") + "a -out /etc/ptrelay/dkim/" + domain + ".ptr" + now.Format("2006") + "a.pem`, publish " +
				"the record it prints, add the [[dkim.keys]] entry it shows, and reload ptrelay"}}
	}
	var out []dnscheck.Check
	rsaKeys := 0
	for _, k := range keys {
		out = append(out, checkKey(ctx, res, k, now)...)
		if k.Algorithm() != "ed25519" {
			rsaKeys++ // an unread key counts as RSA: do not warn about what we cannot see
		}
	}
	if rsaKeys == 0 {
		out = append(out, dnscheck.Check{ID: "dkim-ed25519:" + domain, Title: "DKIM algorithms of " + domain,
			Status: dnscheck.StatusFail, Detail: domain + " is signed with Ed25519 only, which Gmail and most " +
				"receivers do not verify (RFC 8463 is young): to them the mail is unsigned",
			Fix: "add an RSA key for " + domain + " (`ptrelay dkim keygen -algo rsa`) as a second [[dkim.keys]] entry"})
	}
	return out
}

// checkKey is the line of one key, and its warnings.
func checkKey(ctx context.Context, res dnscheck.Lookuper, k *Key, now time.Time) []dnscheck.Check {
	c := dnscheck.Check{ID: "dkim:" + k.Name(), Title: "DKIM key " + k.Name(), Blocking: true}
	publish := "publish the record `ptrelay dkim show` prints for it"
	if rec, err := k.Record(); err == nil {
		publish = "publish this TXT record (one record, these strings): " + rec.ZoneLines()
	}
	txts, err := res.LookupTXT(ctx, k.Name())
	switch {
	case errors.Is(err, dnscheck.ErrTemporary):
		c.Status = dnscheck.StatusTempError
		c.Detail = "the DNS lookup of " + k.Name() + " did not finish: " + err.Error()
		c.Fix = "run the check again; if it keeps failing, check dns.resolvers and that your domain's DNS servers answer"
		return []dnscheck.Check{c}
	case err != nil && !errors.Is(err, dnscheck.ErrNXDomain):
		c.Status, c.Detail, c.Fix = dnscheck.StatusTempError, err.Error(), "run the check again"
		return []dnscheck.Check{c}
	case len(txts) == 0:
		c.Status = dnscheck.StatusFail
		c.Detail = "no TXT record at " + k.Name() + ": receivers cannot verify what ptrelay signs with this key"
		c.Fix = publish
		return []dnscheck.Check{c}
	case len(txts) > 1:
		c.Status = dnscheck.StatusFail
		c.Detail = fmt.Sprintf("%d TXT records at %s: receivers refuse a key published more than once (RFC 6376 "+
			"3.6.2.2)", len(txts), k.Name())
		c.Fix = "delete every TXT record at " + k.Name() + " but the one `ptrelay dkim show` prints for this key"
		return []dnscheck.Check{c}
	}
	tags, perr := parseTags(txts[0])
	switch {
	case perr != nil || tags["v"] != "" && tags["v"] != "DKIM1" || !hasTag(txts[0], "p"):
		c.Status = dnscheck.StatusFail
		c.Detail = "the TXT record at " + k.Name() + " is not a DKIM key record: " + clip(txts[0], 80)
		c.Fix = "replace it: " + publish
		return []dnscheck.Check{c}
	case tags["p"] == "":
		c.Status = dnscheck.StatusFail
		c.Detail = "the record at " + k.Name() + " is revoked (p= is empty): receivers treat mail signed with " +
			"this selector as badly signed"
		c.Fix = "if this key should sign, " + publish + "; if you moved to a new key, set dkim.keys.selector " +
			"and private_key_file to it and reload ptrelay"
		return []dnscheck.Check{c}
	}
	var warns []dnscheck.Check
	if flags := strings.Split(tags["t"], ":"); containsFold(flags, "y") {
		warns = append(warns, dnscheck.Check{ID: "dkim-testing:" + k.Name(), Title: "DKIM key " + k.Name() + " testing flag",
			Status: dnscheck.StatusFail, Detail: "the record carries t=y (testing): receivers must treat signed mail " +
				"as unsigned, so it does nothing for DMARC",
			Fix: "remove t=y from the record once this check passes"})
	}
	if !k.Modified.IsZero() && now.Sub(k.Modified) > rotateAfter {
		warns = append(warns, dnscheck.Check{ID: "dkim-age:" + k.Name(), Title: "DKIM key " + k.Name() + " age",
			Status: dnscheck.StatusFail, Detail: fmt.Sprintf("%s is %d months old", k.File, int(now.Sub(k.Modified).Hours()/24/30)),
			Fix: "rotate it (M3AAWG advises every 6 months): make a key under a new selector with `ptrelay dkim keygen`, " +
				"publish it, switch to it, and revoke the old record a week later (docs/install.md)"})
	}
	if k.Signer == nil {
		c.Status = dnscheck.StatusTempError
		c.Detail = "a record is published at " + k.Name() + ", but " + k.File + " cannot be read here, so it was " +
			"not compared with the private key"
		if k.ReadErr != nil {
			c.Detail += " (" + k.ReadErr.Error() + ")"
		}
		c.Fix = "run `ptrelay check` as root"
		return append([]dnscheck.Check{c}, warns...)
	}
	if err := verifyProbe(k, txts[0]); err != nil {
		c.Status = dnscheck.StatusFail
		c.Detail = "the key published at " + k.Name() + " does not verify mail signed with " + k.File + " (" +
			strings.TrimPrefix(err.Error(), "dkim: ") + "): it is another key's record"
		c.Fix = "replace the record with the one `ptrelay dkim show` prints (" + publish + "), or point " +
			"private_key_file to the key this record belongs to"
		return append([]dnscheck.Check{c}, warns...)
	}
	c.Status = dnscheck.StatusPass
	c.Detail = k.Name() + " publishes the key of " + k.File + " (" + k.Kind() + "): a probe message signed with it verifies"
	return append([]dnscheck.Check{c}, warns...)
}

// verifyProbe signs a probe message with k and verifies it against record, as a receiver would.
func verifyProbe(k *Key, record string) error {
	s := &Signer{keys: map[string][]*Key{k.Domain: {k}}, header: msgauth.CanonicalizationRelaxed,
		body: msgauth.CanonicalizationRelaxed, oversign: []string{"From"}}
	msg := "From: ptrelay check <postmaster@" + k.Domain + ">\r\nTo: <postmaster@" + k.Domain + ">\r\n" +
		"Subject: ptrelay check probe\r\nDate: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <probe." + k.Selector + "@" + k.Domain + ">\r\n\r\nA probe message, never sent.\r\n"
	fields, d, err := s.Sign(strings.NewReader(msg), SignOptions{})
	if err != nil {
		return err
	}
	if !d.Signed() {
		return errors.New("the probe was not signed")
	}
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(append(fields, msg...)), &msgauth.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{record}, nil },
	})
	if err != nil {
		return err
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d signatures on the probe", len(vs))
	}
	return vs[0].Err
}

// parseTags reads a tag=value list (RFC 6376 3.2).
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return tags, fmt.Errorf("%q is not tag=value", strings.TrimSpace(part))
		}
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
	}
	return tags, nil
}

func hasTag(s, name string) bool {
	for _, part := range strings.Split(s, ";") {
		if k, _, ok := strings.Cut(part, "="); ok && strings.TrimSpace(k) == name {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
