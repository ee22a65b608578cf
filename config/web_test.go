package config

import "testing"

// TestWeb_LocalOnly: only a Unix socket, a loopback address or localhost may serve the console in plaintext.
func TestWeb_LocalOnly(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8025":             true,
		"127.0.0.2:8025":             true,
		"[::1]:8025":                 true,
		"[::ffff:127.0.0.1]:8025":    true,
		"localhost:8025":             true,
		"unix:/run/ptrelay/web.sock": true,
		":8025":                      false,
		"0.0.0.0:8025":               false,
		"[::]:8025":                  false,
		"192.168.1.20:8025":          false,
		"relay.example.lan:8025":     false,
		"8025":                       false,
	} {
		if got := (Web{Listen: listen}).LocalOnly(); got != want {
			t.Errorf("LocalOnly(%q) = %v, want %v", listen, got, want)
		}
	}
}
