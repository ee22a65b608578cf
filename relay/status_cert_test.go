package relay

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ptrelay/relay/admin"
)

// `ptrelay status` shows the STARTTLS certificate's names and expiry, over the admin socket, and a reload that
// adds a name to smtp.tls_names shows the new certificate.
func TestStatus_ShowsCertificate(t *testing.T) {
	r, _ := startRelay(t, `tls_cert = "auto"
tls_names = ["relay.example.lan", "192.168.1.20"]`)
	cfg := r.cfg.Load()
	c, err := admin.Dial(cfg.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"relay.example.lan", "relay.test", "127.0.0.1", "192.168.1.20"}
	got := st.Certificate
	if got == nil || !got.SelfSigned || !slices.Equal(got.Names, want) ||
		got.File != filepath.Join(cfg.DataDir, "inbound-tls-cert.pem") || time.Until(got.NotAfter) < 9*365*24*time.Hour {
		t.Fatalf("status certificate = %+v, want self-signed, names %v, in data_dir, ten years", got, want)
	}
	var out strings.Builder
	if err := admin.RenderStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Certificate:   relay.example.lan, relay.test, 127.0.0.1, 192.168.1.20\n") ||
		!strings.Contains(out.String(), "expires "+got.NotAfter.UTC().Format(time.DateOnly)) {
		t.Errorf("ptrelay status output lacks the certificate:\n%s", out.String())
	}

	next := *cfg
	next.SMTP.TLSNames = []string{"relay.example.lan", "mail.example.lan"}
	if err := r.Reload(&next); err != nil {
		t.Fatal(err)
	}
	st, err = c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mail.example.lan", "relay.example.lan", "relay.test", "127.0.0.1"}; st.Certificate == nil || !slices.Equal(st.Certificate.Names, want) {
		t.Fatalf("after the reload: %+v, want names %v", st.Certificate, want)
	}
}

// Without STARTTLS there is no certificate to show.
func TestStatus_NoCertificate(t *testing.T) {
	r, _ := startRelay(t, "")
	if st := r.status(); st.Certificate != nil {
		t.Fatalf("certificate without tls_cert: %+v", st.Certificate)
	}
}
