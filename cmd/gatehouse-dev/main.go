// Command gatehouse-dev runs the whole platform locally for `make run`: a
// Consul dev agent, two catalog instances, one orders instance and the
// gateway, all on 127.0.0.1. It prints how to call the API and, on Ctrl-C,
// stops everything: instances deregister, the agent stops, nothing stays.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-dev:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		logFlags  logconfig.Flags
		binDir    = flag.String("bin", "bin", "folder holding the catalog, orders and gateway binaries")
		consulBin = flag.String("consul", "bin/consul", "consul binary")
		gwAddr    = flag.String("gateway", "127.0.0.1:8080", "gateway HTTP address")
		catalogs  = flag.Int("catalogs", 2, "number of catalog instances")
		step      = flag.Duration("step-interval", 3*time.Second, "time an order spends in each status")
		timeout   = flag.Duration("ready-timeout", 60*time.Second,
			"longest wait for everything to be healthy")
	)
	logFlags.Register(flag.CommandLine)
	flag.Set("log-format", "console") //nolint:errcheck // a known flag; cannot fail
	flag.Parse()

	logger, err := logFlags.Build("dev")
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Println("Starting Consul, 2 catalog instances, orders and the gateway...")
	readyCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	stack, err := devstack.Start(readyCtx, devstack.Config{
		BinDir:       *binDir,
		ConsulBin:    *consulBin,
		GatewayAddr:  *gwAddr,
		Catalogs:     *catalogs,
		StepInterval: *step,
		LogFormat:    logFlags.Format,
		Output:       os.Stdout,
		Logger:       logger,
	})
	if err != nil {
		return err
	}

	printBanner(stack)
	<-ctx.Done()

	fmt.Println("\nStopping: services deregister, then the Consul agent stops...")
	if err := stack.Stop(); err != nil {
		return err
	}
	fmt.Println("Stopped cleanly.")

	return nil
}

func printBanner(s *devstack.Stack) {
	gw := s.GatewayURL
	fmt.Printf(`
Gatehouse is up: every service is registered and passing in Consul.

  Gateway     %[1]s   (OpenAPI at %[1]s/openapi.json)
  Consul UI   %[2]s

Try it:

  curl -s %[1]s/v1/products?page_size=3
  curl -s %[1]s/v1/products/p-1001
  curl -s -X POST %[1]s/v1/orders -H 'Content-Type: application/json' \
    -d '{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":2}]}'

Then watch the order move through its statuses (use the id printed above):

  curl -sN %[1]s/v1/orders/<order-id>:watch

Press Ctrl-C to stop everything.
`, gw, s.Consul.UIURL())
}
