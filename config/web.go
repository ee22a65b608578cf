package config

import (
	"net"
	"net/netip"
	"strings"
)

// Web is [web]: the web console (the queue, the status and the checks in a browser). Off unless Listen is set.
type Web struct {
	Listen  string    `toml:"listen"`   // "host:port" or "unix:/path"; "": no web console
	TLSCert string    `toml:"tls_cert"` // "auto": the smtp self-signed pair (smtp.tls_cert = "auto")
	TLSKey  string    `toml:"tls_key"`
	Users   []WebUser `toml:"users"`
}

// WebUser is one login of the web console; the password is only ever stored as a bcrypt hash.
type WebUser struct {
	Name         string `toml:"name"`
	PasswordHash string `toml:"password_hash"`
	ReadOnly     bool   `toml:"read_only"` // may look, may not act: every POST is refused
}

// webUnixPrefix starts a listen value that names a Unix socket.
const webUnixPrefix = "unix:"

// Enabled reports whether the web console is configured.
func (w Web) Enabled() bool { return strings.TrimSpace(w.Listen) != "" }

// UnixSocket returns the socket path of a "unix:/path" listen value.
func (w Web) UnixSocket() (string, bool) {
	return strings.CutPrefix(w.Listen, webUnixPrefix)
}

// TLS reports whether the console serves HTTPS.
func (w Web) TLS() bool { return w.TLSCert != "" }

// AutoTLS reports whether the console uses the smtp self-signed pair.
func (w Web) AutoTLS() bool { return strings.EqualFold(w.TLSCert, "auto") }

// LocalOnly reports whether only this machine can reach the listen address: a Unix socket, a loopback address
// or "localhost". Everything else (a LAN address, ":8025", a host name) needs TLS.
func (w Web) LocalOnly() bool {
	if _, ok := w.UnixSocket(); ok {
		return true
	}
	host, _, err := net.SplitHostPort(w.Listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func (c *Config) checkWeb(k *checker) {
	w := &c.Web
	for i, u := range w.Users {
		key := idx("web.users", i)
		checkWebUser(k, key, u, w.Users[:i])
	}
	if !w.Enabled() {
		return
	}
	if path, ok := w.UnixSocket(); ok {
		switch {
		case strings.TrimSpace(path) == "":
			k.add("web.listen", "%q names no socket: write \"unix:/run/ptrelay/web.sock\", or host:port such as "+
				"\"127.0.0.1:8025\"", w.Listen)
		case len(path) > 107:
			k.add("web.listen", "the socket path is %d bytes, longer than Unix sockets allow (107): choose a "+
				"shorter path", len(path))
		}
	} else if why := checkHostPort(w.Listen, true); why != "" {
		k.add("web.listen", "%q %s: write \"127.0.0.1:8025\" (reach it through an SSH tunnel), "+
			"\"unix:/run/ptrelay/web.sock\", or a LAN address with tls_cert and tls_key", w.Listen, why)
		return
	}
	switch {
	case w.AutoTLS():
		if w.TLSKey != "" {
			k.add("web.tls_key", "must be empty when tls_cert is \"auto\" (the key is the smtp self-signed pair's): "+
				"remove tls_key, or set tls_cert to your certificate file")
		}
		if !strings.EqualFold(c.SMTP.TLSCert, "auto") {
			k.add("web.tls_cert", "is \"auto\", the smtp self-signed pair, but smtp.tls_cert is not \"auto\": set "+
				"smtp.tls_cert = \"auto\" too, or give web.tls_cert and web.tls_key your certificate's files")
		}
	case w.TLSCert != "" && w.TLSKey == "":
		k.add("web.tls_cert", "is set but web.tls_key is empty: set tls_key to the certificate's private key "+
			"file, or remove tls_cert")
	case w.TLSCert == "" && w.TLSKey != "":
		k.add("web.tls_key", "is set but web.tls_cert is empty: set tls_cert to the certificate file (full "+
			"chain, PEM), or remove tls_key")
	case w.TLSCert == "" && !w.LocalOnly():
		// Basic auth sends the password with every request: in plaintext, only where nobody else can listen.
		k.add("web.tls_cert", "is empty but web.listen %q can be reached from other machines, and the console's "+
			"passwords would cross the network in plaintext: set tls_cert and tls_key (or tls_cert = \"auto\"), "+
			"or listen on \"127.0.0.1:8025\" and use an SSH tunnel", w.Listen)
	}
	if !w.AutoTLS() {
		checkFile(k, "web.tls_cert", w.TLSCert, "the certificate")
	}
	checkFile(k, "web.tls_key", w.TLSKey, "the private key")
	if len(w.Users) == 0 && !w.LocalOnly() {
		// On loopback or a Unix socket the console may run without logins (anyone with a shell on this machine
		// can use it, as with the admin socket's group); reachable from elsewhere it may not.
		k.add("web.users", "is empty but web.listen %q can be reached from other machines: add a [[web.users]] "+
			"table with name and password_hash (run `ptrelay hash-password`), or listen on \"127.0.0.1:8025\"",
			w.Listen)
	}
}

func checkWebUser(k *checker, key string, u WebUser, before []WebUser) {
	switch {
	case strings.TrimSpace(u.Name) == "":
		k.add(key+".name", "is empty: give every [[web.users]] the name it logs in with")
	case strings.ContainsAny(u.Name, ":") || strings.ContainsFunc(u.Name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		// RFC 7617 section 2: the user-id of Basic authentication cannot contain a colon.
		k.add(key+".name", "%q holds a colon or a control character, which a browser's login cannot send: "+
			"choose another name", u.Name)
	}
	for j, b := range before {
		if b.Name == u.Name && u.Name != "" {
			k.add(key+".name", "%q is already the name of web.users[%d]: give each user its own name, or "+
				"remove one of them", u.Name, j+1)
			break
		}
	}
	if u.PasswordHash == "" {
		k.add(key+".password_hash", "is missing: run `ptrelay hash-password`, type the user's password, and "+
			"write the line it prints as password_hash = \"...\"")
	} else if !bcryptHash.MatchString(u.PasswordHash) {
		k.add(key+".password_hash", "is not a bcrypt hash: run `ptrelay hash-password`, type the password, "+
			"and paste the line it prints (starting with $2a$)")
	}
}
