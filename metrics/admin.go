package metrics

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// adminShutdown bounds how long Run waits for scrapes in flight at shutdown.
const adminShutdown = 5 * time.Second

// ErrNilGatherer is returned by NewAdmin when the gatherer is nil.
var ErrNilGatherer = errors.New("metrics: prometheus gatherer is nil")

// AdminFlags are the admin listener settings of a binary.
type AdminFlags struct {
	// Listen is host:port for the admin listener; empty turns it off.
	Listen string
	// Pprof serves /debug/pprof/ on the admin listener.
	Pprof bool
}

// Register adds -admin-listen and -admin-pprof to fs. defaultListen is the
// binary's default address, normally on 127.0.0.1.
func (f *AdminFlags) Register(fs *flag.FlagSet, defaultListen string) {
	fs.StringVar(&f.Listen, "admin-listen", defaultListen,
		"admin listener for /metrics (and /debug/pprof/ with -admin-pprof); empty turns it off")
	fs.BoolVar(&f.Pprof, "admin-pprof", false,
		"serve net/http/pprof under /debug/pprof/ on the admin listener")
}

// Admin is the admin HTTP listener of a binary: /metrics from one gatherer
// and, with WithPprof, /debug/pprof/. It listens on its own address so that
// metrics and profiles are never reachable through the public port.
type Admin struct {
	lis    net.Listener
	srv    *http.Server
	logger *zap.Logger
}

// NewAdmin listens on addr and prepares to serve g. The listener is open
// when NewAdmin returns, so Addr is known before Run; Run closes it.
func NewAdmin(addr string, g prometheus.Gatherer, opts ...Option) (*Admin, error) {
	if g == nil {
		return nil, ErrNilGatherer
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("metrics: admin address %q: %w", addr, err)
	}

	o := newOptions(opts)
	logger := o.logger.Named("admin")

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      promLogger{logger},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: admin listen on %q: %w", addr, err)
	}

	return &Admin{
		lis:    lis,
		logger: logger,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          zap.NewStdLog(logger),
		},
	}, nil
}

// Addr is the address the admin listener is bound to.
func (a *Admin) Addr() net.Addr { return a.lis.Addr() }

// Run serves until ctx is done, then shuts down, waiting at most five
// seconds for requests in flight. It returns nil after an orderly shutdown.
func (a *Admin) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(a.lis) }()
	a.logger.Info("serving", zap.Stringer("addr", a.lis.Addr()))

	select {
	case err := <-served:
		return fmt.Errorf("metrics: admin serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), adminShutdown)
	defer cancel()

	if err := a.srv.Shutdown(shutdownCtx); err != nil {
		_ = a.srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: admin serve: %w", err)
	}

	return nil
}

// Close closes the listener of an Admin whose Run was never called.
func (a *Admin) Close() error {
	if err := a.lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("metrics: close admin listener: %w", err)
	}

	return nil
}

// promLogger passes promhttp's errors to zap.
type promLogger struct{ logger *zap.Logger }

// Println implements promhttp.Logger.
func (l promLogger) Println(v ...any) {
	l.logger.Warn("serve metrics", zap.String("error", fmt.Sprint(v...)))
}
