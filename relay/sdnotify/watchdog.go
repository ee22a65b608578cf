package sdnotify

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// WatchdogInterval returns systemd's watchdog timeout ($WATCHDOG_USEC) and whether the watchdog applies to this
// process: it does not when the variable is unset, or when $WATCHDOG_PID names another process (the variables
// were inherited by a child, which must not ping on the daemon's behalf).
func WatchdogInterval() (time.Duration, bool, error) {
	usecText := os.Getenv("WATCHDOG_USEC")
	if usecText == "" {
		return 0, false, nil
	}
	usec, err := strconv.ParseInt(usecText, 10, 64)
	if err != nil || usec <= 0 {
		return 0, false, fmt.Errorf("%w: WATCHDOG_USEC=%q", ErrBadWatchdog, usecText)
	}
	if pidText := os.Getenv("WATCHDOG_PID"); pidText != "" {
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			return 0, false, fmt.Errorf("%w: WATCHDOG_PID=%q", ErrBadWatchdog, pidText)
		}
		if pid != os.Getpid() {
			return 0, false, nil
		}
	}
	return time.Duration(usec) * time.Microsecond, true, nil
}

// Watchdog sends WATCHDOG=1 at half the watchdog timeout, as sd_watchdog_enabled(3) advises, until ctx ends.
// It returns nil at once when no watchdog applies (see WatchdogInterval), so the daemon can always run it in a
// goroutine. A failed ping is not fatal: the next one may succeed, and if none does systemd restarts us, which
// is the watchdog's purpose.
func Watchdog(ctx context.Context) error {
	timeout, ok, err := WatchdogInterval()
	if err != nil || !ok {
		return err
	}
	tick := time.NewTicker(timeout / 2)
	defer tick.Stop()
	// Ping once at once: the interval counts from the service start, and start-up may have used part of it.
	_ = Notify("WATCHDOG=1")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			_ = Notify("WATCHDOG=1")
		}
	}
}
