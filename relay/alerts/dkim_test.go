package alerts

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"ptrelay/config"
	"ptrelay/relay/dkim"
)

// Alert mail sent through mail_via bypasses delivery, so the channel signs it itself with the function the
// daemon hands it: From: ptrelay@hostname is signed with the key of hostname's domain, and verifies.
func TestMailVia_DKIMSigned(t *testing.T) {
	dir := t.TempDir()
	k, err := dkim.Generate("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.pem")
	if err := dkim.WriteKeyFile(keyFile, k); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Hostname = "relay.contoso.test"
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "contoso.test", Selector: "alerts", PrivateKeyFile: keyFile}}
	signer, err := dkim.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.RecordOf("alerts._domainkey.contoso.test", k.Public())
	if err != nil {
		t.Fatal(err)
	}

	f, addr := startFakeMX(t, false)
	ch, _, _ := newSMTPChannel(addr, nil)
	ch.hostname = "relay.contoso.test"
	ch.sign = func(msg []byte) ([]byte, error) {
		fields, _, err := signer.Sign(bytes.NewReader(msg), dkim.SignOptions{})
		return fields, err
	}
	if res := ch.test(context.Background(), TestNotice("relay.contoso.test", t0)); res.Outcome != "sent" {
		t.Fatalf("%+v", res)
	}
	if len(f.data) != 1 {
		t.Fatalf("%d messages", len(f.data))
	}
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(f.data[0]), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name == rec.Name {
				return []string{rec.Value}, nil
			}
			return nil, errors.New("no such name")
		}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "contoso.test" {
		t.Fatalf("verification %v %+v\n%s", err, vs, f.data[0])
	}

	ch.sign = func([]byte) ([]byte, error) { return nil, errors.New("key gone") }
	res := ch.test(context.Background(), TestNotice("relay.contoso.test", t0.Add(time.Minute)))
	if res.Outcome != "failed" || !strings.Contains(res.Detail, "DKIM signing: key gone") || len(f.data) != 1 {
		t.Errorf("a signing failure: %+v, %d messages", res, len(f.data))
	}
}
