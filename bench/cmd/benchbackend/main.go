// Command benchbackend is the backend of the benchmark harness (see bench/
// and docs/benchmarks.md). It runs the real catalog and orders services
// (services/catalog, services/orders) with a catalog seeded with plenty of
// stock, on a plaintext gRPC listener and optionally behind mutual TLS; or,
// with -http-listen, it is the small HTTP server behind the HAProxy
// reference, answering fixed JSON bytes.
//
// The plaintext gRPC listener exists only here, for benchmarks: no product
// binary has one, and nothing outside bench/ starts this command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// instanceName is sent in x-gatehouse-instance, as the real services send
// their instance id, so responses carry the same headers.
const instanceName = "benchbackend-1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchbackend:", err)
		os.Exit(1)
	}
}

type config struct {
	grpcListen   string
	catalogTLS   string
	ordersTLS    string
	stock        int64
	httpListen   string
	productBody  string
	orderBody    string
	logFlags     logconfig.Flags
	certFlags    certflags.Flags
	drainTimeout time.Duration
	stepInterval time.Duration
}

func run() error {
	var cfg config
	flag.StringVar(&cfg.grpcListen, "grpc-listen", "",
		"plaintext gRPC address serving catalog and orders (bench only)")
	flag.StringVar(&cfg.catalogTLS, "catalog-tls-listen", "",
		"mutual TLS gRPC address serving catalog with the catalog identity")
	flag.StringVar(&cfg.ordersTLS, "orders-tls-listen", "",
		"mutual TLS gRPC address serving orders with the orders identity")
	flag.Int64Var(&cfg.stock, "stock", 1_000_000_000, "stock of every sample product")
	flag.StringVar(&cfg.httpListen, "http-listen", "",
		"serve fixed JSON bytes over HTTP/1.1 here instead of gRPC")
	flag.StringVar(&cfg.productBody, "http-product-body", "",
		"file whose bytes answer GET /v1/products/{id}")
	flag.StringVar(&cfg.orderBody, "http-order-body", "",
		"file whose bytes answer POST /v1/orders")
	flag.DurationVar(&cfg.drainTimeout, "drain-timeout", 5*time.Second,
		"longest wait for calls at shutdown")
	flag.DurationVar(&cfg.stepInterval, "step-interval", 3*time.Second,
		"time an order spends in each status (the fulfilment loop runs every quarter of it)")
	cfg.logFlags.Register(flag.CommandLine)
	cfg.certFlags.Register(flag.CommandLine)
	flag.Parse()

	logger, closeLog, err := cfg.logFlags.Build("benchbackend")
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()

	// The collector target of the product services (internal/servicecmd),
	// so the bench backend costs core 1 what the real catalog would.
	gctune.Apply(logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if cfg.httpListen != "" {
		return serveFixedHTTP(ctx, cfg, logger)
	}

	return serveGRPC(ctx, cfg, logger)
}

// serveGRPC runs the services until ctx ends.
func serveGRPC(ctx context.Context, cfg config, logger *zap.Logger) error {
	if cfg.grpcListen == "" {
		return errors.New("-grpc-listen is required: orders reaches catalog through it")
	}

	products := catalog.SampleProducts()
	for _, p := range products {
		p.Stock = cfg.stock
	}
	store, err := catalog.NewStore(products)
	if err != nil {
		return err
	}
	catalogSvc, err := catalog.NewServer(store)
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", cfg.grpcListen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", cfg.grpcListen, err)
	}

	// Orders calls catalog over a real loopback hop, as in the platform.
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("dial own catalog: %w", err)
	}
	defer func() { _ = conn.Close() }()

	ordersSvc, err := orders.NewServer(orders.NewStore(), catalogv1.NewCatalogServiceClient(conn),
		orders.WithStepInterval(cfg.stepInterval))
	if err != nil {
		_ = lis.Close()
		return err
	}
	defer ordersSvc.Close()

	plain := newServer()
	catalogv1.RegisterCatalogServiceServer(plain, catalogSvc)
	ordersv1.RegisterOrderServiceServer(plain, ordersSvc)
	reflection.Register(plain)

	servers := []*grpc.Server{plain}
	listeners := []net.Listener{lis}
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()

	tlsServers := []struct {
		addr, service string
		register      func(*grpc.Server)
	}{
		{cfg.catalogTLS, "catalog", func(s *grpc.Server) {
			catalogv1.RegisterCatalogServiceServer(s, catalogSvc)
		}},
		{cfg.ordersTLS, "orders", func(s *grpc.Server) {
			ordersv1.RegisterOrderServiceServer(s, ordersSvc)
		}},
	}
	for _, ts := range tlsServers {
		if ts.addr == "" {
			continue
		}

		srv, l, err := newTLSServer(cfg, ts.service, ts.addr, logger)
		if err != nil {
			return err
		}
		ts.register(srv)
		servers = append(servers, srv)
		listeners = append(listeners, l)
	}

	return serveAll(ctx, servers, listeners, cfg.drainTimeout, logger)
}

// newServer is a gRPC server with health and the instance header, and no
// other interceptor.
func newServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.ChainUnaryInterceptor(instanceHeader))
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())

	return srv
}

func instanceHeader(
	ctx context.Context,
	req any,
	_ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-gatehouse-instance", instanceName))

	return handler(ctx, req)
}

// newTLSServer listens on addr with the mutual TLS server credentials of
// service, from the development PKI in -cert-dir.
func newTLSServer(
	cfg config,
	service, addr string,
	logger *zap.Logger,
) (*grpc.Server, net.Listener, error) {
	certs, err := cfg.certFlags.Source(service, logger)
	if err != nil {
		return nil, nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := certs.WaitReady(ctx); err != nil {
		return nil, nil, fmt.Errorf("certificates of %s: %w", service, err)
	}

	creds, err := mtls.NewServerCredentials(certs, mtls.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %q: %w", addr, err)
	}

	return newServer(grpc.Creds(creds)), lis, nil
}

// serveAll serves each server on its listener until ctx ends, then stops
// them gracefully, waiting at most drain.
func serveAll(
	ctx context.Context,
	servers []*grpc.Server,
	listeners []net.Listener,
	drain time.Duration,
	logger *zap.Logger,
) error {
	errs := make(chan error, len(servers))
	for i, srv := range servers {
		logger.Info("serving gRPC", zap.Stringer("addr", listeners[i].Addr()))
		go func() { errs <- srv.Serve(listeners[i]) }()
	}

	select {
	case <-ctx.Done():
	case err := <-errs:
		return fmt.Errorf("grpc server: %w", err)
	}

	done := make(chan struct{})
	go func() {
		for _, srv := range servers {
			srv.GracefulStop()
		}
		close(done)
	}()

	select {
	case <-done:
	case <-time.After(drain):
		for _, srv := range servers {
			srv.Stop()
		}
	}

	return nil
}

// serveFixedHTTP answers GET /v1/products/{id} and POST /v1/orders with the
// bytes of the files given, until ctx ends.
func serveFixedHTTP(ctx context.Context, cfg config, logger *zap.Logger) error {
	product, err := os.ReadFile(cfg.productBody)
	if err != nil {
		return fmt.Errorf("read product body: %w", err)
	}
	order, err := os.ReadFile(cfg.orderBody)
	if err != nil {
		return fmt.Errorf("read order body: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /v1/products/{id}", fixed(product))
	mux.Handle("POST /v1/orders", fixed(order))

	lis, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", cfg.httpListen, err)
	}

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 120 * time.Second}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(lis) }()
	logger.Info("serving fixed HTTP", zap.Stringer("addr", lis.Addr()))

	select {
	case <-ctx.Done():
	case err := <-errs:
		return fmt.Errorf("http server: %w", err)
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()

	return srv.Shutdown(shutdownCtx)
}

// fixed answers every request with body, reading and discarding the
// request body first so the connection stays reusable.
func fixed(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Grpc-Metadata-X-Gatehouse-Instance", instanceName)
		_, _ = w.Write(body)
	})
}
