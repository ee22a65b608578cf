package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/relay/oauth"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// ProbeOptions say how `ptrelay check` reaches the smart hosts: as delivery would.
type ProbeOptions struct {
	Resolver *dnscheck.Resolver // dns.resolvers; nil: the system's
	RootCAs  *x509.CertPool     // nil: the system's roots
	Hostname string             // the EHLO name
	Bind     string             // delivery.bind
	Timeout  time.Duration      // per step; 0: 30 s
}

// ProbeSmarthost tries one smart host the way a delivery starts: it resolves the name through the configured
// resolver, connects, sets up TLS as configured (the certificate checked unless tls_verify = false), says EHLO,
// logs in (fetching a token first for XOAUTH2) and says QUIT. No mail is sent. The result is a line of `ptrelay
// check`: ok, or what failed with the sentence that fixes it.
func ProbeSmarthost(ctx context.Context, h *Smarthost, o ProbeOptions) dnscheck.Check {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	c := dnscheck.Check{ID: "smarthost:" + h.Name, Title: "smart host " + h.Name + " (" + h.Address + ")", Blocking: true}
	fail := func(detail, fix string) dnscheck.Check {
		c.Status, c.Detail, c.Fix = dnscheck.StatusFail, detail, fix
		return c
	}
	var lookup dnscheck.Lookuper
	if o.Resolver != nil {
		lookup = o.Resolver // a nil *Resolver in the interface would not read as "none"
	}
	addrs, err := dnscheck.ResolveHost(ctx, lookup, h.Host)
	if err != nil {
		return fail("cannot resolve "+h.Host+": "+errText(err),
			"check the address of smart host "+h.Name+": its name must resolve through dns.resolvers (or /etc/resolv.conf when that is empty)")
	}
	policy := smtpclient.TLSPolicy{Mode: h.TLS, Verify: h.Verify, RootCAs: o.RootCAs}
	if h.ClientCert != nil && h.TLS != smtpclient.TLSOff {
		cert, err := h.ClientCert()
		if err != nil {
			return fail("cannot read the client certificate: "+errText(err),
				"check tls_client_cert and tls_client_key of this host: a PEM certificate and its key, readable by ptrelay")
		}
		policy.ClientCert = cert
	}
	var ss *smtpclient.Session
	var last error
	for _, a := range addrs {
		ss, last = smtpclient.Dial(ctx, smtpclient.Spec{Host: h.Host, Addr: net.JoinHostPort(a.Unmap().String(), h.Port),
			Bind: o.Bind, Helo: o.Hostname, TLS: policy, Timeout: o.Timeout})
		var se *smtpclient.StepError
		if last == nil || !errors.As(last, &se) || se.Stage != smtpclient.StageConnect {
			break
		}
	}
	if ss == nil {
		var se *smtpclient.StepError
		errors.As(last, &se)
		switch {
		case se == nil || se.Stage == smtpclient.StageConnect:
			cause := last
			if se != nil {
				cause = se.Err
			}
			return fail("cannot connect to "+h.Address+": "+errText(cause), "check the address and port of smart host "+h.Name+
				", and that this network lets connections out to that port (some ISPs block 25; providers use 587 or 465)")
		case se.Stage == smtpclient.StageTLS:
			return fail("TLS with "+smarthostRelay(h, se.Relay)+" failed: "+errText(se.Err), tlsFix(se.Err, h))
		}
		said := errText(se.Err)
		if reply, ok := smtpstatus.FromError(se.Err); ok {
			said = replyText(reply)
		}
		return fail(smarthostRelay(h, se.Relay)+" refused the session at "+string(se.Stage)+": "+said,
			"the host refuses this machine: check with its provider that this server's address may relay (or log in)")
	}
	defer ss.Close(true)
	relay := smarthostRelay(h, ss.Relay())
	secured := "without TLS"
	if ss.Secure() {
		secured = "TLS, certificate not checked (tls_verify = false)"
		if h.Verify {
			secured = "TLS, certificate verified"
		}
	}
	if h.Username == "" {
		c.Status, c.Detail = dnscheck.StatusPass, relay+": "+secured+"; no login configured; no mail sent"
		return c
	}
	cred := smtpclient.Credentials{Mech: h.Auth, Username: h.Username, AllowPlaintext: h.TLS == smtpclient.TLSOff}
	if h.Auth == smtpclient.AuthXOAUTH2 {
		if h.OAuth == nil {
			return fail("no [smarthosts.oauth2] settings", "add the [smarthosts.oauth2] table of this host")
		}
		tok, err := oauth.New(*h.OAuth).Token(ctx)
		if err != nil {
			var oe *oauth.Error
			fix := "check the [smarthosts.oauth2] settings of smart host " + h.Name
			if errors.As(err, &oe) {
				fix = oe.Fix
			}
			return fail("no OAuth2 token: "+errText(err), fix)
		}
		cred.Password = tok.Value
	} else {
		pass, err := h.Password()
		if err != nil {
			return fail("no password: "+errText(err), "write the password into "+h.PasswordSource+" (run `ptrelay check` as root if this shell cannot read it)")
		}
		cred.Password = pass
	}
	err = ss.Auth(cred)
	var notOffered *smtpclient.AuthNotOfferedError
	switch {
	case err == nil:
		c.Status, c.Detail = dnscheck.StatusPass, relay+": "+secured+"; logged in as "+h.Username+"; no mail sent"
		return c
	case errors.Is(err, smtpclient.ErrPlaintextAuth):
		return fail(relay+" offers no TLS, and credentials never go without it",
			"set tls of smart host "+h.Name+" to \"starttls\" or \"implicit\" as the provider documents")
	case errors.As(err, &notOffered):
		return fail(relay+": "+notOffered.Error(), notOfferedFix(h, notOffered))
	}
	said := errText(err)
	reply, ok := smtpstatus.FromError(err)
	if ok {
		said = replyText(reply)
	}
	return fail(relay+" refused the login as "+h.Username+": "+said, LoginFix(h, reply))
}
