// Command gateway runs the REST/JSON edge: it serves HTTP on one address and
// calls the catalog and orders backends over gRPC with mutual TLS, found
// through Consul.
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
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"google.golang.org/grpc"
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
		logFlags  logconfig.Flags
		certFlags certflags.Flags
		srvFlags  serverFlags
		listen    = flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
		consul    = flag.String("consul", api.DefaultConfig().Address,
			"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
		drain = flag.Duration("drain-timeout", 10*time.Second, "longest wait for requests at shutdown")
	)
	logFlags.Register(flag.CommandLine)
	certFlags.Register(flag.CommandLine)
	srvFlags.register(flag.CommandLine)
	flag.Parse()

	logger, err := logFlags.Build("gateway")
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()

	// The gateway's own identity for calls to the backends; until its first
	// certificate is loaded every backend call fails and /readyz says so.
	certs, err := certFlags.Source("gateway", logger)
	if err != nil {
		return err
	}
	defer func() { _ = certs.Close() }()

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
	// Backends are dialed by the IP Consul returns, over mutual TLS; the
	// credentials accept only a server proving the identity of service.
	dial := func(service string) (*grpc.ClientConn, error) {
		serverID, err := certFlags.ID(service)
		if err != nil {
			return nil, err
		}
		creds, err := mtls.NewClientCredentials(certs, serverID, mtls.WithLogger(logger))
		if err != nil {
			return nil, err
		}

		return grpc.NewClient(discovery.Target(service),
			grpc.WithResolvers(resolvers),
			grpc.WithDefaultServiceConfig(discovery.ServiceConfig),
			grpc.WithTransportCredentials(creds),
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

	return serve(logger, *listen, gw, *drain, srvFlags.config(logger))
}

// serve runs the gateway's HTTP server on addr until SIGINT or SIGTERM,
// then drains it for at most drain.
func serve(
	logger *zap.Logger,
	addr string,
	h http.Handler,
	drain time.Duration,
	cfg gateway.ServerConfig,
) error {
	srv, err := gateway.NewHTTPServer(h, cfg)
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", addr, err)
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

	// Limitation: a watch stream still open at shutdown is cut when the
	// drain timeout ends, not told to finish first.
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
