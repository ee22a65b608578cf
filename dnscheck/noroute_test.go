package dnscheck

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

// An IPv4-only network answers an IPv6 socket with ENETUNREACH (no route), EADDRNOTAVAIL (no address) or
// EAFNOSUPPORT (IPv6 disabled): the family is not there, which is no failure to retry.
func TestNoRoute(t *testing.T) {
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "udp6", Err: os.NewSyscallError("connect", errno)}
	}
	for errno, want := range map[syscall.Errno]bool{
		syscall.ENETUNREACH: true, syscall.EADDRNOTAVAIL: true, syscall.EAFNOSUPPORT: true,
		syscall.ECONNREFUSED: false, syscall.ETIMEDOUT: false,
	} {
		if got := noRoute(fmt.Errorf("whoami: %w", dialErr(errno))); got != want {
			t.Errorf("noRoute(%v) = %v, want %v", errno, got, want)
		}
	}
	if noRoute(errors.New("network is unreachable")) {
		t.Error("a bare string is not a socket error")
	}
}
