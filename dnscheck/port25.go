package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// CheckPort25 tries a TCP connection to probe (host:port, normally a big receiver's MX on port 25) over family
// f, to find out whether the ISP blocks outbound port 25, as many do on residential lines. The host is resolved
// with r; nothing is sent and the connection is closed at once. A timeout or refusal is a blocking fail; a DNS
// failure for the probe's name a temperror.
func CheckPort25(ctx context.Context, r Lookuper, probe string, f Family, timeout time.Duration) Check {
	c := Check{ID: "port25", Title: "outbound connections to port 25 (" + probe + ")", Blocking: true}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	host, port, err := net.SplitHostPort(probe)
	if err != nil {
		c.Status, c.Blocking, c.Detail = StatusPermError, false, err.Error()
		c.Fix = "Set egress.port25_probe to host:port, e.g. gmail-smtp-in.l.google.com:25."
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var addrs []netip.Addr
	if a, perr := netip.ParseAddr(host); perr == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else if f == IPv6 {
		addrs, err = r.LookupAAAA(ctx, host)
	} else {
		addrs, err = r.LookupA(ctx, host)
	}
	if err != nil {
		if errors.Is(err, ErrTemporary) {
			c.Status, c.Detail = StatusTempError, "cannot resolve the probe: "+err.Error()
			c.Fix = "Check DNS, then run the check again."
			return c
		}
		c.Status, c.Blocking, c.Detail = StatusPermError, false, fmt.Sprintf("the probe has no %s address: %v", f, err)
		c.Fix = "Set egress.port25_probe to a host with an address of this family."
		return c
	}
	var target netip.Addr
	for _, a := range addrs {
		if FamilyOf(a) == f {
			target = a
			break
		}
	}
	if !target.IsValid() {
		c.Status, c.Blocking, c.Detail = StatusPermError, false, fmt.Sprintf("the probe has no %s address", f)
		c.Fix = "Set egress.port25_probe to a host with an address of this family."
		return c
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(target.String(), port))
	fix := "Ask your ISP to unblock outbound port 25, or send through the smart host (port 587)."
	switch {
	case err == nil:
		c.Status, c.Detail = StatusPass, "connected to "+conn.RemoteAddr().String()
		conn.Close()
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		c.Status, c.Fix = StatusFail, fix
		c.Detail = fmt.Sprintf("no answer from %s within %s: outbound port 25 looks blocked", probe, timeout)
	default:
		c.Status, c.Fix = StatusFail, fix
		c.Detail = fmt.Sprintf("cannot connect to %s: %s", probe, cleanNetErr(err))
	}
	return c
}
