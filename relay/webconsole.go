package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"ptrelay/config"
	"ptrelay/relay/selfcheck"
	"ptrelay/relay/web"
)

// webConsole is the daemon's part of [web]: the console, its listener, and the certificate files' pair (read at
// start and at each reload; with tls_cert = "auto" the inbound server's pair is served instead).
type webConsole struct {
	srv  *web.Server
	ln   net.Listener
	cert atomic.Pointer[tls.Certificate]
}

// openWeb builds the console and binds its listener when web.listen is set, so that a port in use stops the
// start like any other listener.
func (r *Relay) openWeb(cfg *config.Config) error {
	wc := cfg.Web
	if !wc.Enabled() {
		return nil
	}
	o := web.Options{Service: r.admin.Service(), Check: r.runCheck, Listen: wc.Listen, Log: component(r.opts.Log, "web")}
	switch {
	case wc.AutoTLS():
		o.Certificate = func() (*tls.Certificate, error) {
			if c := r.inbound.TLSCertificate(); c != nil {
				return c, nil
			}
			return nil, errors.New("web.tls_cert = \"auto\": the smtp certificate is not there (smtp.tls_cert = \"auto\" is needed)")
		}
	case wc.TLS():
		if err := r.loadWebCert(wc); err != nil {
			return err
		}
		o.Certificate = func() (*tls.Certificate, error) { return r.web.cert.Load(), nil }
	}
	srv, err := web.New(wc.Users, o)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	gid := -1
	if _, isUnix := wc.UnixSocket(); isUnix && cfg.Admin.SocketGroup != "" {
		if gid, err = lookupGroup(cfg.Admin.SocketGroup); err != nil {
			return fmt.Errorf("web.listen: admin.socket_group %q: %w", cfg.Admin.SocketGroup, err)
		}
	}
	ln, err := web.Listen(wc.Listen, gid)
	if err != nil {
		return fmt.Errorf("web.listen %s: %w: %s", wc.Listen, err, listenHint(err, wc.Listen))
	}
	if len(wc.Users) == 0 {
		r.log.Warn("the web console has no [[web.users]]: every account on this machine can use it; add users "+
			"(ptrelay hash-password) to require a login", "listen", wc.Listen)
	}
	r.web.srv, r.web.ln = srv, ln
	return nil
}

func lookupGroup(g string) (int, error) {
	if grp, err := user.LookupGroup(g); err == nil {
		return strconv.Atoi(grp.Gid)
	}
	grp, err := user.LookupGroupId(g)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(grp.Gid)
}

func (r *Relay) loadWebCert(wc config.Web) error {
	c, err := tls.LoadX509KeyPair(wc.TLSCert, wc.TLSKey)
	if err != nil {
		return fmt.Errorf("web.tls_cert/tls_key: %w (both must be PEM files readable by ptrelay)", err)
	}
	r.web.cert.Store(&c)
	return nil
}

// serveWeb runs the console until ctx ends; a failure is logged, not fatal (mail goes on without it).
func (r *Relay) serveWeb(ctx context.Context) {
	if r.web.srv == nil {
		return
	}
	r.log.Info("web console listening", "addr", webAddr(r.web.ln))
	if err := r.web.srv.ServeListener(ctx, r.web.ln); err != nil && ctx.Err() == nil {
		r.log.Error("web console failed; the admin commands still work", "addr", webAddr(r.web.ln), "err", err)
	}
}

// reloadWeb prepares the reload of the console's users and certificate files: the returned function applies
// them. web.listen and whether TLS is used stay as started (restartKeys names them).
func (r *Relay) reloadWeb(cfg *config.Config) (apply func(), err error) {
	if r.web.srv == nil || !cfg.Web.Enabled() {
		return func() {}, nil
	}
	var cert *tls.Certificate
	if wc := cfg.Web; wc.TLS() && !wc.AutoTLS() && r.web.cert.Load() != nil {
		c, err := tls.LoadX509KeyPair(wc.TLSCert, wc.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("web.tls_cert/tls_key: %w (both must be PEM files readable by ptrelay)", err)
		}
		cert = &c
	}
	if len(cfg.Web.Users) == 0 {
		return nil, errors.New("web.users is empty while the console runs: add a [[web.users]] table")
	}
	return func() {
		if err := r.web.srv.SetUsers(cfg.Web.Users); err != nil {
			r.log.Error("keeping the previous users", "err", err)
		}
		if cert != nil {
			r.web.cert.Store(cert)
		}
	}, nil
}

// runCheck is `ptrelay check` for the console: the current configuration, the daemon's resolver, and the TLS
// clients it has seen.
func (r *Relay) runCheck(ctx context.Context) (selfcheck.Result, error) {
	return selfcheck.Run(ctx, r.cfg.Load(), selfcheck.Options{Resolver: r.resolver, TLSClients: r.tlsClients.newestFirst()})
}

// webAddr names the console's listener for the log and status: host:port, or the socket's absolute path.
func webAddr(ln net.Listener) string {
	a := ln.Addr()
	if a.Network() == "unix" {
		if abs, err := filepath.Abs(a.String()); err == nil {
			return "unix:" + abs
		}
		return "unix:" + a.String()
	}
	return a.String()
}
