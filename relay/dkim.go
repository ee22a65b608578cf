package relay

import (
	"bytes"
	"log/slog"
	"strings"

	"ptrelay/config"
	"ptrelay/relay/delivery"
	"ptrelay/relay/dkim"
)

// deliverySettings are delivery's settings of cfg with the DKIM keys the daemon loaded.
func deliverySettings(cfg *config.Config, signer *dkim.Signer) *delivery.Settings {
	st := delivery.NewSettings(cfg)
	st.DKIM = signer
	return st
}

// signOwn signs alert mail that goes out through alerts.mail_via with ptrelay's own client: From: at hostname,
// so the key of hostname's domain signs it, when there is one.
func (r *Relay) signOwn(msg []byte) ([]byte, error) {
	fields, _, err := r.signer.Load().Sign(bytes.NewReader(msg), dkim.SignOptions{})
	return fields, err
}

// logDKIM says at start and after a reload which keys sign, so that the journal shows a key change took effect.
func logDKIM(log *slog.Logger, s *dkim.Signer) {
	keys := s.Keys()
	if len(keys) == 0 {
		return
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	log.Info("DKIM signing", "keys", strings.Join(names, ", "))
}
