// Command catalog runs one instance of the catalog service: gRPC over mutual
// TLS on a loopback port, registered in Consul with a gRPC health check that
// Consul runs over mutual TLS as well.
package main

import (
	"flag"
	"fmt"
	"os"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/internal/servicecmd"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/host"
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
	var flags servicecmd.Flags
	flags.Register(flag.CommandLine)
	stock := flag.Int64("seed-stock", 0,
		"raise every sample product's stock to at least this, for load tests; 0 keeps it")
	flag.Parse()

	if *stock < 0 {
		return fmt.Errorf("-seed-stock %d: want 0 or more", *stock)
	}

	svc, err := flags.Start("catalog")
	if err != nil {
		return err
	}
	defer svc.Close()

	products := catalog.SampleProducts()
	for _, p := range products {
		p.Stock = max(p.GetStock(), *stock)
	}
	store, err := catalog.NewStore(products)
	if err != nil {
		return err
	}
	server, err := catalog.NewServer(store, catalog.WithLogger(svc.Logger))
	if err != nil {
		return err
	}

	h, err := host.New(svc.HostConfig(version))
	if err != nil {
		return err
	}
	catalogv1.RegisterCatalogServiceServer(h.Server(), server)

	svc.Logger.Info("starting", zap.String("version", version), zap.String("consul", flags.Consul))

	return h.Run(svc.Context)
}
