// Command orders runs one instance of the orders service. It finds catalog
// instances through Consul and reserves stock on them over gRPC with mutual
// TLS, passing the user's token on.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/discovery"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/servicecmd"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/services/host"
	"github.com/gatehouse-dev/gatehouse/services/orders"
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
	var flags servicecmd.Flags
	flags.Register(flag.CommandLine)
	step := flag.Duration("step-interval", 3*time.Second, "time an order spends in each status")
	callTO := flag.Duration("catalog-timeout", 5*time.Second, "deadline of each call to catalog")
	flag.Parse()

	svc, err := flags.Start("orders")
	if err != nil {
		return err
	}
	defer svc.Close()

	conn, err := dialCatalog(svc, &flags, *callTO)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()

	server, err := orders.NewServer(orders.NewStore(), catalogv1.NewCatalogServiceClient(conn),
		orders.WithLogger(svc.Logger), orders.WithStepInterval(*step))
	if err != nil {
		return err
	}
	defer server.Close()

	cfg := svc.HostConfig(version)
	// Not ready until a catalog instance answers: orders cannot take an
	// order without one. It may start first and waits for it.
	cfg.Dependencies = []host.Dependency{host.HealthDependency("catalog", conn)}
	h, err := host.New(cfg)
	if err != nil {
		return err
	}
	ordersv1.RegisterOrderServiceServer(h.Server(), server)

	svc.Logger.Info("starting", zap.String("version", version), zap.String("consul", flags.Consul))

	return h.Run(svc.Context)
}

// dialCatalog connects to every catalog instance Consul lists as passing.
func dialCatalog(
	svc *servicecmd.Service,
	flags *servicecmd.Flags,
	callTimeout time.Duration,
) (*grpc.ClientConn, error) {
	catalogID, err := flags.Certs.ID("catalog")
	if err != nil {
		return nil, err
	}
	creds, err := mtls.NewClientCredentials(svc.Certs, catalogID, mtls.WithLogger(svc.Logger))
	if err != nil {
		return nil, err
	}

	// Reads and ReserveStock (idempotent per order id) are retried on
	// another instance when theirs went away; see RetryingServiceConfig.
	serviceConfig, err := discovery.RetryingServiceConfig(discovery.DefaultRetryPolicy,
		catalogv1.CatalogService_ServiceDesc.ServiceName)
	if err != nil {
		return nil, err
	}

	// Tracing, metrics, the request id and the user's token (ReserveStock
	// needs the user's orders.write scope in the catalog too) go with every
	// call, as from every service.
	dialOpts, err := host.DialOptions(svc.Telemetry)
	if err != nil {
		return nil, err
	}

	// Catalog instances are dialed by the IP Consul returns; the credentials
	// accept only a server whose certificate carries the catalog identity.
	conn, err := grpc.NewClient(discovery.Target("catalog"), append(dialOpts,
		grpc.WithResolvers(discovery.NewResolverBuilder(svc.Consul,
			discovery.WithLogger(svc.Logger), discovery.WithChangeHook(svc.Kit.DiscoveryHook()))),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(defaultDeadline(callTimeout)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial catalog: %w", err)
	}

	return conn, nil
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
