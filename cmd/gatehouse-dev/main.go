// Command gatehouse-dev runs the whole platform locally for `make run`: a
// Consul dev agent, two catalog instances, one orders instance and the
// gateway, all on 127.0.0.1, every gRPC hop over mutual TLS with
// certificates from a development PKI it keeps in .run/certs. It prints how
// to call the API and, on Ctrl-C, stops everything: instances deregister,
// the agent stops, nothing stays.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/pki"
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
		issuer    = flag.String("issuer", "127.0.0.1:8081", "dev OAuth 2.0 issuer address")
		catalogs  = flag.Int("catalogs", 2, "number of catalog instances")
		step      = flag.Duration("step-interval", 3*time.Second, "time an order spends in each status")
		timeout   = flag.Duration("ready-timeout", 60*time.Second,
			"longest wait for everything to be healthy")
		consulLog = flag.String("consul-log", ".run/consul.log", "file for the Consul agent's output")
		certDir   = flag.String("cert-dir", pki.DefaultDir,
			"development PKI folder; missing or expiring certificates are created")
		trustDomain = flag.String("trust-domain", identity.DefaultTrustDomain,
			"trust domain of every identity")
	)
	logFlags.Register(flag.CommandLine)
	flag.Set("log-format", "console") //nolint:errcheck // a known flag; cannot fail
	flag.Parse()

	logger, closeLog, err := logFlags.Build("dev")
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()

	if err := os.MkdirAll(filepath.Dir(*consulLog), 0o755); err != nil {
		return err
	}
	consulOut, err := os.Create(*consulLog)
	if err != nil {
		return err
	}
	defer func() { _ = consulOut.Close() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Println("Starting Consul, 2 catalog instances, orders and the gateway...")
	readyCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	stack, err := devstack.Start(readyCtx, devstack.Config{
		BinDir:       *binDir,
		ConsulBin:    *consulBin,
		GatewayAddr:  *gwAddr,
		IssuerAddr:   *issuer,
		Catalogs:     *catalogs,
		StepInterval: *step,
		LogFormat:    logFlags.Format,
		Output:       os.Stdout,
		ConsulOutput: consulOut,
		Logger:       logger,
		CertDir:      *certDir,
		TrustDomain:  *trustDomain,
	})
	if err != nil {
		return err
	}

	printBanner(stack, *consulLog)
	fmt.Printf("Every gRPC hop is mutual TLS; certificates are in %s.\n", stack.CertDir)

	var died error
	select {
	case <-ctx.Done():
	case p := <-stack.Died():
		// Half a platform is worse than none: say which part ended, and stop.
		status := "exit status 0"
		if err := p.Err(); err != nil {
			status = err.Error()
		}
		fmt.Printf("\n%s exited unexpectedly (%s).\n", p.Name, status)
		died = fmt.Errorf("stopped everything because %s exited (%s)", p.Name, status)
	}

	fmt.Println("\nStopping: services deregister, then the Consul agent stops...")
	if err := stack.Stop(); err != nil {
		return errors.Join(died, err)
	}
	if died != nil {
		return died
	}
	fmt.Println("Stopped cleanly.")

	return nil
}

func printBanner(s *devstack.Stack, consulLog string) {
	fmt.Printf(`
Gatehouse is up: every service is registered and passing in Consul, and
every internal call is mutual TLS.

  Gateway     %[1]s   (OpenAPI at %[1]s/openapi.json)
  Issuer      %[2]s   (dev OAuth 2.0: client %[4]s, secret %[5]s)
  Consul UI   %[3]s   (agent log in %[6]s)
  Metrics     http://127.0.0.1:9090/metrics

Product reads are public (-i shows which catalog instance answered):

  curl -s '%[1]s/v1/products?page_size=3'
  curl -si '%[1]s/v1/products/p-1001'

Orders need a bearer token; get one with the client-credentials grant:

  TOKEN=$(curl -s -u %[4]s:%[5]s -d grant_type=client_credentials \
    -d scope='orders.read orders.write' '%[2]s/oauth2/token' \
    | sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p')
  curl -s -X POST '%[1]s/v1/orders' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":2}]}'

Watch a new order move through its statuses (one JSON line per change):

  ORDER=$(curl -s -X POST '%[1]s/v1/orders' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"customerId":"bob","lineItems":[{"productId":"p-1003","quantity":1}]}' \
    | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
  curl -sN "%[1]s/v1/orders/${ORDER}:watch" -H "Authorization: Bearer $TOKEN"

Without the token the API answers 401 with a WWW-Authenticate challenge.
Press Ctrl-C to stop everything.
`, s.GatewayURL, s.IssuerURL, s.Consul.UIURL(), devstack.DemoClientID,
		devstack.DemoClientSecret, consulLog)
}
