// Command gateway runs the REST/JSON edge: it serves HTTP on one address and
// calls the catalog and orders backends over gRPC with mutual TLS, found
// through Consul.
package main

import (
	"context"
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
	"github.com/gatehouse-dev/gatehouse/internal/gctune"
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
		edgeFlags edgeFlags
		listen    = flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
		consul    = flag.String("consul", api.DefaultConfig().Address,
			"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
		drain = flag.Duration("drain-timeout", 10*time.Second, "longest wait for requests at shutdown")
		delay = flag.Duration("shutdown-delay", 2*time.Second,
			"how long /readyz answers 503 before the listener closes at shutdown")
	)
	logFlags.Register(flag.CommandLine)
	certFlags.Register(flag.CommandLine)
	srvFlags.register(flag.CommandLine)
	edgeFlags.register(flag.CommandLine)
	flag.Parse()

	logger, closeLog, err := logFlags.Build("gateway")
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()
	gctune.Apply(logger)

	// The gateway's own identity for calls to the backends; until its first
	// certificate is loaded every backend call fails and /readyz says so.
	certs, err := certFlags.Source("gateway", logger)
	if err != nil {
		return err
	}
	defer func() { _ = certs.Close() }()

	edge, err := edgeFlags.start(logger)
	if err != nil {
		return err
	}
	defer edge.close()
	edge.kit.TrackCertificates("gateway", certs)

	client, err := api.NewClient(&api.Config{Address: *consul})
	if err != nil {
		return fmt.Errorf("consul client for %q: %w", *consul, err)
	}

	validator, err := validation.New(validation.WithLogger(logger))
	if err != nil {
		return err
	}
	resolvers := discovery.NewResolverBuilder(client, discovery.WithLogger(logger),
		discovery.WithChangeHook(edge.kit.DiscoveryHook()))

	// Safe methods (reads, and ReserveStock) are retried on another instance
	// when theirs went away; CreateOrder never is.
	serviceConfig, err := discovery.RetryingServiceConfig(discovery.DefaultRetryPolicy,
		apiServices...)
	if err != nil {
		return err
	}

	// Client interceptor order, first = outermost: the edge's metrics and
	// request id, then validation, which refuses an invalid request before
	// it costs a backend hop.
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

		opts := append([]grpc.DialOption{}, edge.client...)
		return grpc.NewClient(discovery.Target(service), append(opts,
			grpc.WithResolvers(resolvers),
			grpc.WithDefaultServiceConfig(serviceConfig),
			grpc.WithTransportCredentials(creds),
			grpc.WithChainUnaryInterceptor(validator.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(validator.StreamClientInterceptor()),
		)...)
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

	// The per-principal limit needs the matched route's method, which only
	// the gateway knows; gw is set before any request arrives.
	var gw *gateway.Gateway
	resolve := func(r *http.Request) (string, bool) { return gw.Method(r) }

	gwCfg := gateway.Config{
		Catalog: catalogConn,
		Orders:  ordersConn,
		OpenAPI: openapi.Document,
		Logger:  logger,
	}
	if err := edge.configure(&gwCfg, resolve); err != nil {
		return err
	}
	if gw, err = gateway.New(gwCfg); err != nil {
		return err
	}
	if err := edge.checkMethodRules(gw); err != nil {
		return err
	}

	shutdown := gateway.ShutdownConfig{Ready: gw, Delay: *delay, DrainTimeout: *drain,
		Logger: logger}

	return serve(logger, *listen, edge.layers.Wrap(gw), shutdown, srvFlags.config(logger))
}

// serve runs the gateway's HTTP server on addr until SIGINT or SIGTERM,
// then shuts it down as gateway.Serve does: /readyz answers 503 first, and
// in-flight requests drain after the delay.
func serve(
	logger *zap.Logger,
	addr string,
	h http.Handler,
	shutdown gateway.ShutdownConfig,
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

	logger.Info("serving", zap.Stringer("addr", lis.Addr()), zap.String("version", version))

	return gateway.Serve(ctx, srv, lis, shutdown)
}
