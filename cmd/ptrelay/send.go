package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"ptrelay/dnscheck"
	"ptrelay/relay/smtpclient"
	"ptrelay/relay/smtpstatus"
)

// runSend injects one test message, so an admin can test a connector or the relay itself end to end. It speaks
// through the same SMTP client as delivery (relay/smtpclient): EHLO with hostname, one session.
func runSend(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", stderr)
	path := fs.String("config", "", "configuration file (for the default server, hostname and resolvers)")
	to := fs.String("to", "", "recipient address (required)")
	from := fs.String("from", "", "sender address (default: ptrelay-test@<hostname>)")
	server := fs.String("server", "", "relay to send through, host:port (default: the first smtp.listen address)")
	user := fs.String("user", "", "AUTH user name")
	passwordFile := fs.String("password-file", "", "file holding the AUTH password")
	auth := fs.String("auth", "auto", "AUTH mechanism: auto (PLAIN when offered, else LOGIN), plain or login (what Exchange uses)")
	startTLS := fs.Bool("starttls", true, "use STARTTLS when the server offers it")
	insecure := fs.Bool("insecure", true, "do not verify the server's certificate (relays on a LAN often have a self-signed one)")
	subject := fs.String("subject", "ptrelay test message", "Subject header")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		fmt.Fprintln(stderr, "ptrelay send: -to is required, e.g. ptrelay send -to you@example.com")
		return exitError{2}
	}
	mech, ok := map[string]smtpclient.AuthMech{"auto": smtpclient.AuthAuto, "plain": smtpclient.AuthPlain,
		"login": smtpclient.AuthLogin}[strings.ToLower(*auth)]
	if !ok {
		fmt.Fprintf(stderr, "ptrelay send: -auth %q: use auto, plain or login\n", *auth)
		return exitError{2}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	addr := *server
	if addr == "" {
		if len(cfg.SMTP.Listen) == 0 {
			return errors.New("no -server given and smtp.listen is empty")
		}
		addr = dialableAddr(cfg.SMTP.Listen[0])
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-server %q: write host:port, e.g. relay.example.lan:25", addr)
	}
	sub := smtpclient.Submission{
		Spec: smtpclient.Spec{Host: host, Helo: cfg.Hostname, Timeout: time.Minute,
			TLS: smtpclient.TLSPolicy{Mode: smtpclient.TLSOff}},
		Port: port,
		From: *from,
		To:   []string{*to},
	}
	if sub.From == "" {
		sub.From = "ptrelay-test@" + cfg.Hostname
	}
	if *startTLS {
		sub.Spec.TLS = smtpclient.TLSPolicy{Mode: smtpclient.TLSOpportunistic, Verify: !*insecure}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := dnscheck.NewResolver(dnscheck.ResolverOptions{Servers: cfg.DNS.Resolvers, Timeout: cfg.DNS.Timeout.D()})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if sub.Addrs, err = dnscheck.ResolveHost(ctx, res, host); err != nil {
		return fmt.Errorf("-server %s: %w", host, err)
	}
	if *user != "" {
		if *passwordFile == "" {
			return errors.New("-user needs -password-file (the password is not taken on the command line, where ps would show it)")
		}
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return err
		}
		sub.Credentials = &smtpclient.Credentials{Mech: mech, Username: *user,
			Password: strings.TrimRight(string(b), "\r\n"),
			// In clear only to this machine, or when the admin turned STARTTLS off on purpose.
			AllowPlaintext: !*startTLS || loopbackOnly(sub.Addrs)}
	}
	sub.Message = testMessage(sub.From, *to, *subject, cfg.Hostname, addr)
	reply, err := smtpclient.Submit(ctx, sub)
	if err != nil {
		return fmt.Errorf("sending through %s: %s", addr, sendError(err))
	}
	fmt.Fprintf(stdout, "sent through %s: %s\n", addr, reply)
	return nil
}

// sendError says what went wrong in the words of the server when it refused, with the fix when we refused.
func sendError(err error) string {
	if st, ok := smtpstatus.FromError(err); ok {
		return "the server refused: " + st.String()
	}
	var notOffered *smtpclient.AuthNotOfferedError
	switch {
	case errors.Is(err, smtpclient.ErrPlaintextAuth):
		return err.Error() + " to a server on another machine: let the server offer STARTTLS, or give -starttls=false to send the password in clear"
	case errors.As(err, &notOffered) && notOffered.Offered == "":
		return err.Error() + " (before STARTTLS, or from a network the relay allows, it may not be needed: drop -user)"
	}
	return err.Error()
}

func loopbackOnly(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if !a.IsLoopback() {
			return false
		}
	}
	return len(addrs) > 0
}

// dialableAddr turns a listen address such as ":2525" into one a client can dial.
func dialableAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

func testMessage(from, to, subject, hostname, server string) []byte {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n", from, to, subject)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s@%s>\r\n", time.Now().Format(time.RFC1123Z), hex.EncodeToString(id), hostname)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	fmt.Fprintf(&b, "This is a test message sent with `ptrelay send` through %s.\r\n", server)
	b.WriteString("If it arrived, the connector and the relay work.\r\n")
	return []byte(b.String())
}
