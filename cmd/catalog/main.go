// Command catalog runs one instance of the catalog service: gRPC over mutual
// TLS on a loopback port, registered in Consul with a gRPC health check that
// Consul runs over mutual TLS as well.
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
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/host"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "catalog:", err)
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
		drain = flag.Duration("drain-timeout", 10*time.Second, "longest wait for calls at shutdown")
		stock = flag.Int64("seed-stock", 0,
			"raise every sample product's stock to at least this, for load tests; 0 keeps it")
	)
	logFlags.Register(flag.CommandLine)
	certFlags.Register(flag.CommandLine)
	authFlags.Register(flag.CommandLine)
	jwtFlags.Register(flag.CommandLine)
	telFlags.Register(flag.CommandLine, "127.0.0.1:0")
	flag.Parse()

	logger, err := logFlags.Build("catalog")
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()

	certs, err := certFlags.Source("catalog", logger)
	if err != nil {
		return err
	}
	defer func() { _ = certs.Close() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	instance := discovery.NewInstanceID("catalog")
	kit, err := telFlags.Start("catalog", instance, logger)
	if err != nil {
		return err
	}
	defer func() { _ = kit.Close() }()
	kit.TrackCertificates("catalog", certs)

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

	client, err := api.NewClient(&api.Config{Address: *consul})
	if err != nil {
		return fmt.Errorf("consul client for %q: %w", *consul, err)
	}

	if *stock < 0 {
		return fmt.Errorf("-seed-stock %d: want 0 or more", *stock)
	}
	products := catalog.SampleProducts()
	for _, p := range products {
		p.Stock = max(p.GetStock(), *stock)
	}

	store, err := catalog.NewStore(products)
	if err != nil {
		return err
	}
	svc, err := catalog.NewServer(store, catalog.WithLogger(logger))
	if err != nil {
		return err
	}

	h, err := host.New(host.Config{
		Service:           "catalog",
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
	})
	if err != nil {
		return err
	}
	catalogv1.RegisterCatalogServiceServer(h.Server(), svc)

	logger.Info("starting", zap.String("version", version), zap.String("consul", *consul))

	return h.Run(ctx)
}
