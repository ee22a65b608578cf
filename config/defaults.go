package config

import (
	_ "embed"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// defaultTOML is kept as a file, not as Go literals, so that an admin can read the defaults in the same
// language as the configuration file, and so that decoding them exercises the same strict path as a user's file.
//
//go:embed default.toml
var defaultTOML []byte

// fallbackDataDir is used outside systemd, where $STATE_DIRECTORY is not set: next to where ptrelay was started,
// which is what someone trying ptrelay from a shell expects.
const fallbackDataDir = "./ptrelay-data"

// Default returns the embedded defaults (docs/configuration.md), with the machine-dependent ones filled in: hostname is the
// operating system's host name, data_dir is $STATE_DIRECTORY or ./ptrelay-data. Every call returns a new value.
func Default() *Config {
	c := &Config{}
	if errs := decodeInto(c, defaultTOML, "default.toml"); len(errs) > 0 {
		// The embedded file is part of the binary and a test decodes it; reaching this is a build defect.
		panic("config: embedded default.toml does not decode: " + errors.Join(errs...).Error())
	}
	c.fillDynamic()
	return c
}

// fillDynamic resolves the defaults that depend on the environment. It runs after the user's file is decoded, so
// an explicit empty string ("hostname = \"\"") also means "the default".
func (c *Config) fillDynamic() {
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}
	if c.DataDir == "" {
		c.DataDir = firstDir(os.Getenv("STATE_DIRECTORY"))
		if c.DataDir == "" {
			c.DataDir = fallbackDataDir
		}
	}
	// A bare resolver IP means port 53, the only port a resolver listens on in practice; storing the full form
	// spares every consumer from handling both.
	for i, r := range c.DNS.Resolvers {
		if a, err := netip.ParseAddr(r); err == nil {
			c.DNS.Resolvers[i] = netip.AddrPortFrom(a, 53).String()
		}
	}
}

// firstDir returns the first entry of a systemd directory variable: with several StateDirectory= or
// RuntimeDirectory= entries, systemd joins the paths with ':'.
func firstDir(v string) string {
	first, _, _ := strings.Cut(v, ":")
	return first
}

// EffectiveRoutingMode resolves routing.mode: an empty mode means "auto" when a smart host is configured, else
// "direct". It returns RoutingAuto, RoutingDirect or RoutingSmarthost for a valid configuration.
func (c *Config) EffectiveRoutingMode() RoutingMode {
	if c.Routing.Mode != RoutingDefault {
		return c.Routing.Mode
	}
	if c.HasSmarthosts() {
		return RoutingAuto
	}
	return RoutingDirect
}

// SendingDomain is the domain of hostname ("example.com" for "relay.example.com"): the domain whose DNS the
// egress checks and `ptrelay check` judge (its MX, its SPF record, the PTR name's domain). "" when hostname has
// no dot.
func (c *Config) SendingDomain() string {
	if _, rest, ok := strings.Cut(c.Hostname, "."); ok {
		return strings.TrimSuffix(rest, ".")
	}
	return ""
}

// AdminSocket returns the path of the admin Unix socket: admin.socket when set, else
// $RUNTIME_DIRECTORY/admin.sock (systemd's RuntimeDirectory=), else <data_dir>/admin.sock.
//
// The environment is read at each call. A command run from an admin's shell has no $RUNTIME_DIRECTORY, so for the
// CLI to find a daemon started by systemd, admin.socket should be set in the file (docs/configuration.md says so).
func (c *Config) AdminSocket() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	if d := firstDir(os.Getenv("RUNTIME_DIRECTORY")); d != "" {
		return filepath.Join(d, "admin.sock")
	}
	return filepath.Join(c.DataDir, "admin.sock")
}

// credentialName is the systemd credential the shipped unit hands over
// ("LoadCredential=smarthost:/etc/ptrelay/smarthost.pass"): the password of a smart host named "smarthost".
const credentialName = "smarthost"
