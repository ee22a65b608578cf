package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"ptrelay/config"
	"ptrelay/relay"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "configuration file")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	base, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "ptrelay serve: %v\n", err)
		return exitError{2}
	}
	log := base.With("component", "daemon") // serve's own lines; relay.New names its parts the same way
	cfg, source, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ptrelay serve: the configuration has errors:\n  %s\n", joinLines(err))
		return exitError{1}
	}
	found := cfg.CheckSecrets(config.SecretsOptions{Daemon: true})
	if err := config.Refused(found); err != nil {
		fmt.Fprintf(stderr, "ptrelay serve: the configuration has errors:\n  %s\n", joinLines(err))
		return exitError{1}
	}
	log.Info("configuration loaded", "source", source)
	logFindings(log, found)
	tuneGC()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	r, err := relay.New(cfg, relay.Options{Log: base, Version: version, ConfigSource: source})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitError{1}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// A broken new config is refused and the running one stays: the admin sees why in the log.
				newCfg, src, err := config.Load(*path)
				var found []config.Finding
				if err == nil {
					found = newCfg.CheckSecrets(config.SecretsOptions{Daemon: true})
					err = config.Refused(found)
				}
				if err != nil {
					log.Error("reload refused: the new configuration has errors; the running configuration stays", "source", src, "err", err)
					r.ReloadFailed(err)
					continue
				}
				if err := r.Reload(newCfg); err != nil {
					log.Error("reload refused; the running configuration stays", "err", err)
					continue
				}
				log.Info("configuration reloaded", "source", src)
				logFindings(log, found)
			}
		}
	}()
	if err := r.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return exitError{1}
	}
	return nil
}

// logFindings logs what CheckSecrets found that does not stop the daemon: an expiring certificate, an empty
// smart host password (loudly: mail for the smart host waits until it is fixed).
func logFindings(log *slog.Logger, found []config.Finding) {
	for _, f := range found {
		if !f.Refuse {
			log.Log(context.Background(), f.Level, f.Msg, "key", f.Key)
		}
	}
}

// newLogger builds the slog logger. Under journald (JOURNAL_STREAM set) the timestamp is left out, since the
// journal stamps every line itself.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: use text or json", format)
}

// tuneGC trades memory the relay barely uses for CPU: its live heap stays in the tens of MB (bodies above the
// queue's inline limit stream to spool files), and at GOGC=100 the collector took a tenth of the CPU under a
// 100 KB-message load. A soft memory limit keeps a burst from growing the heap unchecked. GOGC and GOMEMLIMIT
// in the environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1 << 30)
	}
}
