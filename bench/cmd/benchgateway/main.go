// Command benchgateway is the gateway under test in the benchmark harness
// (see bench/ and docs/benchmarks.md), in one of two shapes:
//
//   - with no -layers, "bare": a plain grpc-gateway ServeMux with default
//     options, the generated handlers and plaintext connections to the
//     backends, behind a plain net/http server; the floor of what the
//     JSON-to-gRPC translation costs;
//   - with -layers, Gatehouse's gateway package (its strict HTTP edge) plus
//     the layers named, composed from the same library packages and in the
//     same order as cmd/gateway, so each layer can be measured alone.
//
// Backends are dialed directly by address (-catalog, -orders), not found
// through Consul. Like benchbackend, it exists for benchmarks only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Layer names accepted by -layers. "edge" is the gateway package alone;
// every other layer implies it.
const (
	layerEdge       = "edge"
	layerJWT        = "jwt"
	layerRateLimit  = "ratelimit"
	layerValidation = "validation"
	layerAccessLog  = "accesslog"
	layerMetrics    = "metrics"
	layerTracing    = "tracing"
	layerMTLS       = "mtls"
)

var allLayers = []string{layerEdge, layerJWT, layerRateLimit, layerValidation,
	layerAccessLog, layerMetrics, layerTracing, layerMTLS}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	listen     string
	catalog    string
	orders     string
	layers     string
	rateConfig string
	admin      metrics.AdminFlags
	trace      tracing.Config
	logFlags   logconfig.Flags
	certFlags  certflags.Flags
	authFlags  authflags.Flags
}

func run() error {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8090", "HTTP listen address")
	flag.StringVar(&o.catalog, "catalog", "", "catalog backend address (TLS one with mtls)")
	flag.StringVar(&o.orders, "orders", "", "orders backend address (TLS one with mtls)")
	flag.StringVar(&o.layers, "layers", "",
		"comma-separated layers on top of the edge: "+strings.Join(allLayers, ",")+
			", or all; empty is bare grpc-gateway")
	flag.StringVar(&o.rateConfig, "ratelimit-config", "", "JSON file of rate limits")
	o.admin.Register(flag.CommandLine, "")
	o.trace.RegisterFlags(flag.CommandLine)
	o.logFlags.Register(flag.CommandLine)
	o.certFlags.Register(flag.CommandLine)
	o.authFlags.Register(flag.CommandLine)
	flag.Parse()

	layers, err := parseLayers(o.layers)
	if err != nil {
		return err
	}
	if o.catalog == "" || o.orders == "" {
		return errors.New("-catalog and -orders are required")
	}

	logger, closeLog, err := o.logFlags.Build("benchgateway")
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg, err := metrics.NewRegistry()
	if err != nil {
		return err
	}
	if o.admin.Listen != "" {
		stopAdmin, err := startAdmin(o.admin, reg, logger)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}

	var h http.Handler
	var srv *http.Server
	if len(layers) == 0 {
		h, err = bare(o)
		srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	} else {
		// Gatehouse's wiring gets Gatehouse's collector target, as
		// cmd/gateway does; bare stays plain grpc-gateway with Go's.
		gctune.Apply(logger)
		var c *composition
		c, err = compose(ctx, o, layers, reg, logger)
		if c != nil {
			defer c.close()
		}
		if err == nil {
			srv, err = c.server()
		}
	}
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", o.listen, err)
	}
	logger.Info("serving", zap.Stringer("addr", lis.Addr()),
		zap.Strings("layers", layers))

	return serve(ctx, srv, lis)
}

// parseLayers reads -layers; "all" is every layer.
func parseLayers(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if s == "all" {
		return allLayers, nil
	}

	layers := []string{layerEdge}
	for _, l := range strings.Split(s, ",") {
		l = strings.TrimSpace(l)
		if !slices.Contains(allLayers, l) {
			return nil, fmt.Errorf("-layers: unknown layer %q (want %s)", l,
				strings.Join(allLayers, ", "))
		}
		if !slices.Contains(layers, l) {
			layers = append(layers, l)
		}
	}

	return layers, nil
}

// bare is plain grpc-gateway: default ServeMux options, generated handlers,
// plaintext gRPC clients without interceptors.
func bare(o options) (http.Handler, error) {
	ctx := context.Background()
	mux := runtime.NewServeMux()

	catalogConn, err := grpc.NewClient(o.catalog,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial catalog: %w", err)
	}
	ordersConn, err := grpc.NewClient(o.orders,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial orders: %w", err)
	}

	if err := catalogv1.RegisterCatalogServiceHandlerClient(ctx, mux,
		catalogv1.NewCatalogServiceClient(catalogConn)); err != nil {
		return nil, fmt.Errorf("register catalog routes: %w", err)
	}
	if err := ordersv1.RegisterOrderServiceHandlerClient(ctx, mux,
		ordersv1.NewOrderServiceClient(ordersConn)); err != nil {
		return nil, fmt.Errorf("register orders routes: %w", err)
	}

	return mux, nil
}

// startAdmin serves /metrics of reg (and pprof when asked) on the admin
// address until the returned function is called.
func startAdmin(
	flags metrics.AdminFlags,
	reg *prometheus.Registry,
	logger *zap.Logger,
) (func(), error) {
	admin, err := metrics.NewAdmin(flags.Listen, reg, metrics.WithLogger(logger),
		metrics.WithPprof(flags.Pprof))
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Run(ctx) }()
	logger.Info("admin listener", zap.Stringer("addr", admin.Addr()))

	return func() {
		cancel()
		if err := <-done; err != nil {
			logger.Warn("admin listener", zap.Error(err))
		}
	}, nil
}

// serve runs srv on lis until ctx ends, then shuts it down.
func serve(ctx context.Context, srv *http.Server, lis net.Listener) error {
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(lis) }()

	select {
	case err := <-errs:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}

	return nil
}
