package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"ptrelay/config"
)

// runSend injects one test message, so an admin can test a connector or the relay itself end to end.
func runSend(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", stderr)
	path := fs.String("config", "", "configuration file (for the default server and hostname)")
	to := fs.String("to", "", "recipient address (required)")
	from := fs.String("from", "", "sender address (default: ptrelay-test@<hostname>)")
	server := fs.String("server", "", "relay to send through, host:port (default: the first smtp.listen address)")
	user := fs.String("user", "", "AUTH user name")
	passwordFile := fs.String("password-file", "", "file holding the AUTH password")
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
	cfg, _, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("configuration: %v", joinLines(err))
	}
	addr := *server
	if addr == "" {
		if len(cfg.SMTP.Listen) == 0 {
			return errors.New("no -server given and smtp.listen is empty")
		}
		addr = dialableAddr(cfg.SMTP.Listen[0])
	}
	sender := *from
	if sender == "" {
		sender = "ptrelay-test@" + cfg.Hostname
	}
	var password string
	if *user != "" {
		if *passwordFile == "" {
			return errors.New("-user needs -password-file (the password is not taken on the command line, where ps would show it)")
		}
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	msg := testMessage(sender, *to, *subject, cfg.Hostname, addr)
	reply, err := sendOne(addr, cfg.Hostname, sender, *to, msg, *user, password, *startTLS, *insecure)
	if err != nil {
		return fmt.Errorf("sending through %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "sent through %s: %s\n", addr, reply)
	return nil
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

func sendOne(addr, helo, from, to string, msg []byte, user, password string, startTLS, insecure bool) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return "", err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return "", err
	}
	if ok, _ := c.Extension("STARTTLS"); ok && startTLS {
		host, _, _ := net.SplitHostPort(addr)
		// go-smtp's client has no StartTLS on an open client, so start over on a STARTTLS connection.
		c.Close()
		conn, err = net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return "", err
		}
		c, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: host, InsecureSkipVerify: insecure})
		if err != nil {
			return "", err
		}
		defer c.Close()
		if err := c.Hello(helo); err != nil {
			return "", err
		}
	}
	if user != "" {
		var mech sasl.Client
		if ok, _ := c.Extension("AUTH"); !ok {
			return "", errors.New("the server offers no AUTH here (before STARTTLS, or from an allowed network it may not be needed: drop -user)")
		}
		if c.SupportsAuth("PLAIN") {
			mech = sasl.NewPlainClient("", user, password)
		} else {
			mech = sasl.NewLoginClient(user, password)
		}
		if err := c.Auth(mech); err != nil {
			return "", err
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_ = c.Quit()
	return resp.StatusText, nil
}
