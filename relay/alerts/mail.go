package alerts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"ptrelay/queue"
)

// ChannelResult is what happened to a notice on one channel, as `ptrelay alerts test` prints it.
type ChannelResult struct {
	Channel string `json:"channel"` // "mail" or "webhook"
	Outcome string `json:"outcome"` // "sent", "queued" or "failed"
	Detail  string `json:"detail"`  // the server's reply, the HTTP status, the queue ID or the error
}

// channel hands notices to one kind of receiver. deliver must not wait on the network: the round goes on in
// the background and its outcome comes back through the manager's report function.
type channel interface {
	name() string
	deliver(ns []Notice)
	test(ctx context.Context, n Notice) ChannelResult
}

// mailRetries are the waits before the second, third and fourth attempt of alert mail through mail_via: short,
// because a notice that arrives an hour late has lost most of its worth, and the webhook (if any) is told
// when mail keeps failing.
var mailRetries = []time.Duration{15 * time.Second, time.Minute, 5 * time.Minute}

// mailTimeout bounds one SMTP attempt to mail_via, dial to QUIT.
const mailTimeout = 2 * time.Minute

// smtpChannel sends alert mail straight to the internal mail server (alerts.mail_via) with its own SMTP
// client, so that it reaches the admin when ptrelay's queue or egress is what is broken.
type smtpChannel struct {
	via      string
	to       []string
	hostname string
	loc      *time.Location
	now      func() time.Time
	retries  []time.Duration
	report   func(ok bool, detail string, ns []Notice, final bool)
	ctx      context.Context
	wg       *sync.WaitGroup
	// sign makes the DKIM-Signature fields of a message (Options.Sign); nil: none.
	sign func(msg []byte) ([]byte, error)
}

func (c *smtpChannel) name() string { return "mail" }

func (c *smtpChannel) deliver(ns []Notice) {
	msg := renderMail(ns, c.hostname, c.to, c.now(), c.loc)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var err error
		for i := 0; ; i++ {
			var reply string
			reply, err = c.send(c.ctx, msg)
			if err == nil {
				c.report(true, reply, ns, true)
				return
			}
			if i == len(c.retries) || errors.Is(err, errPermanent) {
				break
			}
			c.report(false, err.Error(), ns, false)
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(c.retries[i]):
			}
		}
		c.report(false, err.Error(), ns, true)
	}()
}

func (c *smtpChannel) test(ctx context.Context, n Notice) ChannelResult {
	reply, err := c.send(ctx, renderMail([]Notice{n}, c.hostname, c.to, c.now(), c.loc))
	if err != nil {
		return ChannelResult{Channel: "mail", Outcome: "failed", Detail: "via " + c.via + ": " + err.Error()}
	}
	return ChannelResult{Channel: "mail", Outcome: "sent", Detail: "via " + c.via + ": " + reply}
}

// errPermanent marks a refusal that retrying cannot change (a 5xx to MAIL or to every RCPT).
var errPermanent = errors.New("refused")

// send makes one SMTP attempt: opportunistic STARTTLS (an internal server's certificate is rarely one a
// client can verify; the content is ptrelay's own words, not users' mail), MAIL FROM:<> so that nothing ever
// bounces back, every mail_to. It returns the server's reply to the data.
func (c *smtpChannel) send(ctx context.Context, msg MailMessage) (string, error) {
	var sig []byte
	if c.sign != nil {
		// Per attempt, like delivery: the signature's time is the sending time, and a reloaded key applies.
		var err error
		if sig, err = c.sign(msg.Data); err != nil {
			return "", fmt.Errorf("DKIM signing: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, mailTimeout)
	defer cancel()
	cl, err := c.dial(ctx, true)
	if err != nil && !errors.Is(err, ctx.Err()) {
		cl, err = c.dial(ctx, false) // no STARTTLS, or a handshake that failed: the same server in clear
	}
	if err != nil {
		return "", err
	}
	defer cl.Close()
	if err := cl.Hello(c.hostname); err != nil {
		return "", smtpErr("EHLO", err)
	}
	if err := cl.Mail("", nil); err != nil {
		return "", smtpErr("MAIL FROM:<>", err)
	}
	var refused []string
	for _, to := range c.to {
		if err := cl.Rcpt(to, nil); err != nil {
			refused = append(refused, to+": "+smtpErr("RCPT", err).Error())
		}
	}
	if len(refused) == len(c.to) {
		return "", fmt.Errorf("%w: every recipient: %s", errPermanent, strings.Join(refused, "; "))
	}
	w, err := cl.Data()
	if err != nil {
		return "", smtpErr("DATA", err)
	}
	if _, err := w.Write(append(sig, msg.Data...)); err != nil {
		return "", smtpErr("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", smtpErr("end of DATA", err)
	}
	_ = cl.Quit()
	reply := "250 " + resp.StatusText
	if len(refused) > 0 {
		reply += " (refused: " + strings.Join(refused, "; ") + ")"
	}
	return reply, nil
}

func (c *smtpChannel) dial(ctx context.Context, starttls bool) (*smtp.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.via)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// go-smtp's client takes no context, and writes the body without a deadline: closing the connection when
	// ctx ends bounds every step.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var cl *smtp.Client
	if starttls {
		host, _, _ := net.SplitHostPort(c.via)
		cl, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err != nil {
			stop()
			conn.Close()
			return nil, fmt.Errorf("STARTTLS: %w", err)
		}
	} else {
		cl = smtp.NewClient(conn)
	}
	return cl, nil
}

func smtpErr(step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		text := fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], clean(se.Message, 200))
		if se.Code >= 500 {
			return fmt.Errorf("%w: %s answered %s", errPermanent, step, text)
		}
		return fmt.Errorf("%s answered %s", step, text)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// queueChannel hands alert mail to ptrelay's own queue (alerts.mail_via empty): it then goes out like any
// other mail, from the null sender, and the queue conditions leave it out (its ID is tracked).
type queueChannel struct {
	store    *queue.Store
	to       []string
	hostname string
	loc      *time.Location
	now      func() time.Time
	queued   func(id string, ns []Notice)
	report   func(ok bool, detail string, ns []Notice, final bool)
}

func (c *queueChannel) name() string { return "mail" }

func (c *queueChannel) deliver(ns []Notice) {
	id, err := c.enqueue(renderMail(ns, c.hostname, c.to, c.now(), c.loc))
	if err != nil {
		c.report(false, err.Error(), ns, true)
		return
	}
	c.queued(id, ns)
}

func (c *queueChannel) test(_ context.Context, n Notice) ChannelResult {
	id, err := c.enqueue(renderMail([]Notice{n}, c.hostname, c.to, c.now(), c.loc))
	if err != nil {
		return ChannelResult{Channel: "mail", Outcome: "failed", Detail: "into ptrelay's queue: " + err.Error()}
	}
	c.queued(id, nil) // tracked like any alert mail: it must not raise a queue alert of its own
	return ChannelResult{Channel: "mail", Outcome: "queued", Detail: "queued as " + id + " (mail_via is empty: it leaves through ptrelay's own delivery; `ptrelay queue show " + id + "` follows it)"}
}

func (c *queueChannel) enqueue(msg MailMessage) (string, error) {
	w, err := c.store.NewWriter()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(msg.Data); err != nil {
		_ = w.Abort()
		return "", err
	}
	rcpts := make([]queue.Recipient, len(c.to))
	for i, to := range c.to {
		rcpts[i] = queue.Recipient{Addr: to, State: queue.StateQueued}
	}
	return w.Commit(queue.Envelope{From: "", Session: "alerts"}, rcpts)
}
