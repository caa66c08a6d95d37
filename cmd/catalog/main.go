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

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
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
		listen    = flag.String("listen", "127.0.0.1:0", "gRPC listen address (port 0 picks one)")
		consul    = flag.String("consul", api.DefaultConfig().Address,
			"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
		drain = flag.Duration("drain-timeout", 10*time.Second, "longest wait for calls at shutdown")
	)
	logFlags.Register(flag.CommandLine)
	certFlags.Register(flag.CommandLine)
	authFlags.Register(flag.CommandLine)
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

	client, err := api.NewClient(&api.Config{Address: *consul})
	if err != nil {
		return fmt.Errorf("consul client for %q: %w", *consul, err)
	}

	store, err := catalog.NewStore(catalog.SampleProducts())
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
	})
	if err != nil {
		return err
	}
	catalogv1.RegisterCatalogServiceServer(h.Server(), svc)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	logger.Info("starting", zap.String("version", version), zap.String("consul", *consul))

	return h.Run(ctx)
}
