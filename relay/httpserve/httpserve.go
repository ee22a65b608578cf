// Package httpserve runs an http.Server on a listener until a context ends, for the daemon's small HTTP
// endpoints (the admin socket, /metrics). It knows nothing of what they serve.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ShutdownGrace bounds how long requests in flight may run once the context has ended.
const ShutdownGrace = 5 * time.Second

// Serve serves srv on ln until ctx ends, then shuts it down gracefully (within ShutdownGrace) and returns nil;
// any other failure of the server is returned.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}
