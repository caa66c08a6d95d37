package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ServerConfig holds the limits of the HTTP server in front of the
// gateway. They bound what a client can hold before a route is known;
// once the gateway has read a request, its route's deadline takes over.
// Zero fields take the defaults named on each.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading the request line and headers; a
	// client that sends them slowly is disconnected. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request, body included; a body
	// that arrives too slowly gets 408. Default 15s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing answers that are not under a route's
	// deadline: operational endpoints and early refusals. API routes set
	// their own. Default 15s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection may wait for its
	// next request. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the server's hard cap on request line and headers;
	// past it (plus net/http's 4 KiB of slack) net/http itself answers 431
	// in plain text and closes. Keep it above Config.MaxHeaderBytes, whose
	// 431 is JSON. Default 64 KiB.
	MaxHeaderBytes int
	// Logger receives net/http's own error messages at warn level; nil
	// means no logging.
	Logger *zap.Logger
}

// Validate reports the first problem with c.
func (c *ServerConfig) Validate() error {
	switch {
	case c.ReadHeaderTimeout < 0, c.ReadTimeout < 0, c.WriteTimeout < 0, c.IdleTimeout < 0:
		return errors.New("gateway: negative server timeout")
	case c.MaxHeaderBytes < 0:
		return errors.New("gateway: negative server header limit")
	case c.ReadTimeout > 0 && c.ReadHeaderTimeout > c.ReadTimeout:
		return errors.New("gateway: read header timeout exceeds the read timeout")
	}

	return nil
}

// NewHTTPServer returns an http.Server serving h (normally a *Gateway)
// with the limits in cfg. The caller runs it (Serve on a listener) and
// shuts it down.
//
// The server speaks HTTP/1.1 only. It leaves "OPTIONS *" to h, so that
// answer has the same JSON shape as every other.
//
// Limitation: requests net/http cannot parse never reach h, so their
// answers are net/http's own plain text: 400 for a malformed request line
// or header, 431 past MaxHeaderBytes, 501 for an unknown Transfer-Encoding.
func NewHTTPServer(h http.Handler, cfg ServerConfig) (*http.Server, error) {
	if h == nil {
		return nil, errors.New("gateway: nil handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	setDefault(&cfg.ReadHeaderTimeout, 5*time.Second)
	setDefault(&cfg.ReadTimeout, 15*time.Second)
	setDefault(&cfg.WriteTimeout, 15*time.Second)
	setDefault(&cfg.IdleTimeout, 60*time.Second)
	setDefault(&cfg.MaxHeaderBytes, 64<<10)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	errorLog, err := zap.NewStdLogAt(cfg.Logger.Named("http"), zapcore.WarnLevel)
	if err != nil {
		return nil, err
	}

	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            cfg.ReadHeaderTimeout,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxHeaderBytes:               cfg.MaxHeaderBytes,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     errorLog,
	}, nil
}

// Drain makes /readyz answer 503 from now on, so that whatever routes
// traffic to this gateway stops sending new requests; every other route is
// still served. Serve calls it when shutdown begins. It is safe for
// concurrent use and cannot be undone.
func (g *Gateway) Drain() {
	g.draining.Store(true)
}

// Drainer is told that shutdown has begun; *Gateway is one.
type Drainer interface {
	Drain()
}

// ShutdownConfig says how Serve stops. Zero fields take the defaults named
// on each.
type ShutdownConfig struct {
	// Ready is told when shutdown begins, before anything else happens;
	// normally the *Gateway, whose /readyz then answers 503. nil tells
	// nobody.
	Ready Drainer
	// Delay is how long the server keeps serving after that, with
	// keep-alives off, so that load balancers polling /readyz stop sending
	// new requests before the listener closes. Set it to at least their
	// polling interval. Default 0: no delay.
	Delay time.Duration
	// DrainTimeout bounds how long in-flight requests and streams may run
	// on after the listener closed; then their connections are closed.
	// Default 10s.
	DrainTimeout time.Duration
	// Logger records the steps of the shutdown; nil means no logging.
	Logger *zap.Logger
}

// Serve serves srv on lis until ctx ends, then shuts down in order: it
// tells cfg.Ready (so /readyz answers 503), keeps serving for cfg.Delay
// with keep-alives off, closes the listener and waits for in-flight
// requests and streams (srv.Shutdown) for at most cfg.DrainTimeout, and
// closes the connections still open after that. It returns nil after a
// shutdown, also one whose drain timed out (that is logged), and the
// server's error when serving failed.
//
// Limitation: a watch stream still open when the drain timeout ends is
// cut, not told to finish first; its client sees the stream break.
func Serve(ctx context.Context, srv *http.Server, lis net.Listener, cfg ShutdownConfig) error {
	if cfg.Delay < 0 || cfg.DrainTimeout < 0 {
		return errors.New("gateway: negative shutdown delay or drain timeout")
	}

	setDefault(&cfg.DrainTimeout, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	select {
	case err := <-served:
		return fmt.Errorf("gateway: serve http on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	shutdown(srv, cfg)

	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: serve http on %s: %w", lis.Addr(), err)
	}

	return nil
}

// shutdown runs the steps of Serve's shutdown.
func shutdown(srv *http.Server, cfg ShutdownConfig) {
	logger := cfg.Logger

	// Each answer from now on says "Connection: close", so clients come
	// back on new connections, which the load balancer sends elsewhere.
	srv.SetKeepAlivesEnabled(false)

	if cfg.Ready != nil {
		cfg.Ready.Drain()
	}

	logger.Info("shutting down: /readyz answers 503",
		zap.Duration("delay", cfg.Delay), zap.Duration("drain_timeout", cfg.DrainTimeout))

	time.Sleep(cfg.Delay)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()

	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("drain timed out; closing remaining connections", zap.Error(err))
		_ = srv.Close()

		return
	}

	logger.Info("drained")
}
