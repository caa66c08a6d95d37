// Command gateway runs the REST/JSON edge: it serves HTTP on one address and
// calls the catalog and orders backends over gRPC, found through Consul.
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
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		logFlags logconfig.Flags
		listen   = flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
		consul   = flag.String("consul", api.DefaultConfig().Address,
			"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
		drain = flag.Duration("drain-timeout", 10*time.Second, "longest wait for requests at shutdown")
	)
	logFlags.Register(flag.CommandLine)
	flag.Parse()

	logger, err := logFlags.Build("gateway")
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()

	client, err := api.NewClient(&api.Config{Address: *consul})
	if err != nil {
		return fmt.Errorf("consul client for %q: %w", *consul, err)
	}

	validator, err := validation.New(validation.WithLogger(logger))
	if err != nil {
		return err
	}
	resolvers := discovery.NewResolverBuilder(client, discovery.WithLogger(logger))

	// Client interceptor order, first = outermost: validation refuses an
	// invalid request before it costs a backend hop.
	// Limitation: backends are called over plaintext gRPC on loopback until
	// the mutual TLS work lands.
	dial := func(service string) (*grpc.ClientConn, error) {
		return grpc.NewClient(discovery.Target(service),
			grpc.WithResolvers(resolvers),
			grpc.WithDefaultServiceConfig(discovery.ServiceConfig),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithChainUnaryInterceptor(validator.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(validator.StreamClientInterceptor()),
		)
	}

	catalogConn, err := dial("catalog")
	if err != nil {
		return fmt.Errorf("dial catalog: %w", err)
	}
	defer func() { _ = catalogConn.Close() }()

	ordersConn, err := dial("orders")
	if err != nil {
		return fmt.Errorf("dial orders: %w", err)
	}
	defer func() { _ = ordersConn.Close() }()

	gw, err := gateway.New(gateway.Config{
		Catalog: catalogConn,
		Orders:  ordersConn,
		OpenAPI: openapi.Document,
		Logger:  logger,
	})
	if err != nil {
		return err
	}

	return serve(logger, *listen, gw, *drain)
}

func serve(logger *zap.Logger, addr string, h http.Handler, drain time.Duration) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", addr, err)
	}

	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(logger.Named("http")),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("serving", zap.Stringer("addr", lis.Addr()), zap.String("version", version))

	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()

	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("drain timed out; closing remaining connections", zap.Error(err))
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}

	return nil
}
