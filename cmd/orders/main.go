// Command orders runs one instance of the orders service. It finds catalog
// instances through Consul and reserves stock on them over gRPC with mutual
// TLS, accepting only servers that prove the catalog identity.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/discovery"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/services/host"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		logFlags  logconfig.Flags
		certFlags certflags.Flags
		authFlags certflags.Auth
		jwtFlags  authflags.Flags
		telFlags  telemetry.Flags
		listen    = flag.String("listen", "127.0.0.1:0", "gRPC listen address (port 0 picks one)")
		consul    = flag.String("consul", api.DefaultConfig().Address,
			"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
		drain  = flag.Duration("drain-timeout", 10*time.Second, "longest wait for calls at shutdown")
		step   = flag.Duration("step-interval", 3*time.Second, "time an order spends in each status")
		callTO = flag.Duration("catalog-timeout", 5*time.Second, "deadline of each call to catalog")
	)
	logFlags.Register(flag.CommandLine)
	certFlags.Register(flag.CommandLine)
	authFlags.Register(flag.CommandLine)
	jwtFlags.Register(flag.CommandLine)
	telFlags.Register(flag.CommandLine, "127.0.0.1:0")
	flag.Parse()

	logger, err := logFlags.Build("orders")
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()

	certs, err := certFlags.Source("orders", logger)
	if err != nil {
		return err
	}
	defer func() { _ = certs.Close() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	instance := discovery.NewInstanceID("orders")
	kit, err := telFlags.Start("orders", instance, logger)
	if err != nil {
		return err
	}
	defer func() { _ = kit.Close() }()
	kit.TrackCertificates("orders", certs)

	tel := host.Telemetry{
		Metrics:   kit.Registry,
		Tracing:   kit.Tracing,
		AccessLog: logger,
		Events:    kit.Events,
	}

	// Waits, within -jwt-start-timeout, for the issuer's keys: without them
	// no call that needs a user token could be served.
	verifier, err := jwtFlags.Verifier(ctx, logger)
	if err != nil {
		return err
	}
	defer func() { _ = verifier.Close() }()

	catalogID, err := certFlags.ID("catalog")
	if err != nil {
		return err
	}
	catalogCreds, err := mtls.NewClientCredentials(certs, catalogID, mtls.WithLogger(logger))
	if err != nil {
		return err
	}

	client, err := api.NewClient(&api.Config{Address: *consul})
	if err != nil {
		return fmt.Errorf("consul client for %q: %w", *consul, err)
	}

	// Reads and ReserveStock (idempotent per order id) are retried on
	// another instance when theirs went away; see RetryingServiceConfig.
	serviceConfig, err := discovery.RetryingServiceConfig(discovery.DefaultRetryPolicy,
		catalogv1.CatalogService_ServiceDesc.ServiceName)
	if err != nil {
		return err
	}

	// Tracing, metrics, the request id and the user's token (ReserveStock
	// needs the user's orders.write scope in the catalog too) go with every
	// call, as from every service.
	dialOpts, err := host.DialOptions(tel)
	if err != nil {
		return err
	}

	// Catalog instances are dialed by the IP Consul returns; the credentials
	// accept only a server whose certificate carries the catalog identity.
	conn, err := grpc.NewClient(discovery.Target("catalog"), append(dialOpts,
		grpc.WithResolvers(discovery.NewResolverBuilder(client, discovery.WithLogger(logger))),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithTransportCredentials(catalogCreds),
		grpc.WithChainUnaryInterceptor(defaultDeadline(*callTO)),
	)...)
	if err != nil {
		return fmt.Errorf("dial catalog: %w", err)
	}
	defer func() { _ = conn.Close() }()

	svc, err := orders.NewServer(orders.NewStore(), catalogv1.NewCatalogServiceClient(conn),
		orders.WithLogger(logger), orders.WithStepInterval(*step))
	if err != nil {
		return err
	}
	defer svc.Close()

	h, err := host.New(host.Config{
		Service:           "orders",
		ListenAddr:        *listen,
		Version:           version,
		Consul:            client,
		DrainTimeout:      *drain,
		Logger:            logger,
		Certificates:      certs,
		TrustDomain:       certFlags.TrustDomain,
		KnownServices:     authFlags.KnownServices,
		ReflectionCallers: authFlags.ReflectionCallers,
		AuthDryRun:        authFlags.DryRun,
		Tokens:            verifier,
		InstanceID:        instance,
		Telemetry:         tel,
		// Not ready until a catalog instance answers: orders cannot take an
		// order without one. It may start first and waits for it.
		Dependencies: []host.Dependency{host.HealthDependency("catalog", conn)},
	})
	if err != nil {
		return err
	}
	ordersv1.RegisterOrderServiceServer(h.Server(), svc)

	logger.Info("starting", zap.String("version", version), zap.String("consul", *consul))

	return h.Run(ctx)
}

// defaultDeadline gives every outgoing call a deadline unless the incoming
// one already set a shorter one.
func defaultDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(
		ctx context.Context,
		method string,
		req, reply any,
		cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker,
		opts ...grpc.CallOption,
	) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()

		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
