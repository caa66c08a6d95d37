package host_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/services/host"
)

// launched is a host whose Run the test ends itself.
type launched struct {
	*host.Host
	logs *observer.ObservedLogs
	stop func() error // ends Run and returns its error
}

// launch builds a host for service with its certificate from p, lets
// register add services, and runs it until stop or the end of the test.
func launch(
	t *testing.T,
	p *testsupport.TestPKI,
	service string,
	mutate func(*host.Config),
	register func(*grpc.Server),
) *launched {
	t.Helper()

	core, logs := observer.New(zapcore.DebugLevel)
	p.Issue(t, service)

	cfg := host.Config{
		Service:      service,
		ListenAddr:   "127.0.0.1:0",
		DrainTimeout: 5 * time.Second,
		Logger:       zap.New(core),
		Certificates: p.Source(t, service),
		Tokens:       tokenIssuer(t).Verifier(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}

	h, err := host.New(cfg)
	if err != nil {
		t.Fatalf("host.New(%s): %v", service, err)
	}

	register(h.Server())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- h.Run(ctx) }()

	var result error
	var stopped atomic.Bool
	stop := func() error {
		if stopped.CompareAndSwap(false, true) {
			cancel()
			result = <-done
		}

		return result
	}
	t.Cleanup(func() { _ = stop() })

	return &launched{Host: h, logs: logs, stop: stop}
}

func registerCatalog(s *grpc.Server) { catalogv1.RegisterCatalogServiceServer(s, fakeCatalog{}) }

// clientCreds are the mutual TLS credentials of client calling server.
func clientCreds(
	t *testing.T,
	p *testsupport.TestPKI,
	client, server string,
) credentials.TransportCredentials {
	t.Helper()

	src := testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, client)))}

	creds, err := mtls.NewClientCredentials(src, testsupport.ID(t, server))
	if err != nil {
		t.Fatal(err)
	}

	return creds
}

// instanceStatus returns the status of the host's instance in Consul:
// "passing", "critical"…, or "absent" when Consul does not list it.
func instanceStatus(client *api.Client, service, id string) string {
	entries, _, err := client.Health().Service(service, "", false, nil)
	if err != nil {
		return "error: " + err.Error()
	}

	for _, e := range entries {
		if e.Service.ID == id {
			return e.Checks.AggregatedStatus()
		}
	}

	return "absent"
}

// logIndex returns the position of the first entry with message msg, or -1.
func logIndex(logs *observer.ObservedLogs, msg string) int {
	for i, e := range logs.All() {
		if e.Message == msg {
			return i
		}
	}

	return -1
}

// TestConsulLifecycle starts an instance before its Consul agent, restarts
// the agent (which forgets every registration) and stops the instance: it
// serves all along, registers once the agent answers, registers again
// after the restart, and at shutdown leaves the passing set before it
// deregisters and drains.
func TestConsulLifecycle(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	p.Issue(t, "consul")
	agent := testsupport.NewConsul(t, consulagent.Config{
		ExtraHCL: consulagent.ChecksOverMutualTLS(p.Dir.CACert(), p.Dir.Cert("consul"),
			p.Dir.Key("consul")),
	})

	client, err := agent.Client()
	if err != nil {
		t.Fatal(err)
	}

	h := launch(t, p, "catalog", func(c *host.Config) {
		c.Consul = client
		c.LeaveTimeout = 15 * time.Second
	}, registerCatalog)

	conn := dial(t, h.Addr().String(), clientCreds(t, p, "gateway", "catalog"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Consul is not there yet: the instance serves, and keeps asking.
	eventually(t, 10*time.Second, "serving without consul", func() bool {
		return checkHealth(ctx, conn) == nil
	})
	waitLog(t, h.logs, 0, "consul agent request failed; retrying until it answers", "", "")

	if err := agent.Start(ctx); err != nil {
		t.Fatalf("start consul: %v", err)
	}

	eventually(t, 15*time.Second, "passing once consul is up", func() bool {
		return instanceStatus(client, "catalog", h.ID()) == api.HealthPassing
	})

	if err := agent.Restart(ctx); err != nil {
		t.Fatalf("restart consul: %v", err)
	}

	waitLog(t, h.logs, 0, "consul agent lost the registration; registering again", "", "")
	eventually(t, 15*time.Second, "passing again after the restart", func() bool {
		return instanceStatus(client, "catalog", h.ID()) == api.HealthPassing
	})

	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Each step of the shutdown, in order; "out of rotation" is only logged
	// once Consul stopped listing the instance as passing.
	steps := []string{"shutting down", "reported not serving", "out of rotation in consul",
		"deregistered", "drained"}
	last := -1

	for _, msg := range steps {
		i := logIndex(h.logs, msg)
		if i <= last {
			t.Errorf("log %q at %d, want it after the previous step (at %d)", msg, i, last)
		}

		last = i
	}

	if got := instanceStatus(client, "catalog", h.ID()); got != "absent" {
		t.Errorf("after shutdown consul lists the instance as %q, want it absent", got)
	}
}

// TestWaitsForDependencies keeps an instance NOT_SERVING until its
// dependency is available, then serves.
func TestWaitsForDependencies(t *testing.T) {
	p := testsupport.NewTestPKI(t)

	var available atomic.Bool
	dep := host.Dependency{Name: "inventory", Check: func(context.Context) error {
		if !available.Load() {
			return errors.New("no inventory instance")
		}

		return nil
	}}

	h := launch(t, p, "catalog", func(c *host.Config) {
		c.Dependencies = []host.Dependency{dep}
	}, registerCatalog)

	conn := dial(t, h.Addr().String(), clientCreds(t, p, "gateway", "catalog"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	waitLog(t, h.logs, 0, "not ready: waiting for a dependency", "dependency", "inventory")

	err := checkHealth(ctx, conn)
	if err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Fatalf("health while waiting for the dependency: %v, want NOT_SERVING", err)
	}

	available.Store(true)

	eventually(t, 10*time.Second, "serving once the dependency is there", func() bool {
		return checkHealth(ctx, conn) == nil
	})
	waitLog(t, h.logs, 0, "dependency available", "dependency", "inventory")
}

// blockingOrders sends one snapshot on WatchOrder and then holds the stream
// open until release is closed.
type blockingOrders struct {
	ordersv1.UnimplementedOrderServiceServer
	release chan struct{}
}

func (b blockingOrders) WatchOrder(
	req *ordersv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse],
) error {
	err := stream.Send(&ordersv1.WatchOrderResponse{Order: &ordersv1.Order{Id: req.GetId()}})
	if err != nil {
		return err
	}

	select {
	case <-b.release:
		return nil
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

// TestShutdownDrainsStreams stops an instance with a stream open: a stream
// that ends within the drain timeout completes, one that does not is cut.
func TestShutdownDrainsStreams(t *testing.T) {
	tests := []struct {
		name     string
		finishes bool
		wantCode codes.Code // of the stream's end; OK is a clean end
		wantLog  string
	}{
		{name: "stream ends within the drain", finishes: true, wantCode: codes.OK,
			wantLog: "drained"},
		{name: "stream outlives the drain", wantCode: codes.Unavailable,
			wantLog: "drain timed out; closing remaining calls"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testsupport.NewTestPKI(t)
			svc := blockingOrders{release: make(chan struct{})}

			h := launch(t, p, "orders", func(c *host.Config) {
				c.DrainTimeout = 500 * time.Millisecond
			}, func(s *grpc.Server) { ordersv1.RegisterOrderServiceServer(s, svc) })

			conn := dial(t, h.Addr().String(), clientCreds(t, p, "gateway", "orders"))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			ctx = testsupport.WithToken(ctx, tokenIssuer(t).Token(t, "alice", "orders.read"))

			stream, err := ordersv1.NewOrderServiceClient(conn).WatchOrder(ctx,
				&ordersv1.WatchOrderRequest{Id: orderID}, grpc.WaitForReady(true))
			if err != nil {
				t.Fatalf("WatchOrder: %v", err)
			}

			if _, err := stream.Recv(); err != nil {
				t.Fatalf("first snapshot: %v", err)
			}

			stopped := make(chan error, 1)
			go func() { stopped <- h.stop() }()

			waitLog(t, h.logs, 0, "reported not serving", "", "")

			if tt.finishes {
				close(svc.release)
			}

			_, err = stream.Recv()
			if tt.wantCode == codes.OK && !errors.Is(err, io.EOF) {
				t.Errorf("stream ended with %v, want a clean end", err)
			}

			if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
				t.Errorf("stream ended with %v, want code %v", err, tt.wantCode)
			}

			if err := <-stopped; err != nil {
				t.Errorf("Run: %v", err)
			}

			waitLog(t, h.logs, 0, tt.wantLog, "", "")
		})
	}
}

// TestValidateLifecycleFields covers the lifecycle settings of Config.
func TestValidateLifecycleFields(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	p.Issue(t, "catalog")
	src := p.Source(t, "catalog")
	check := func(context.Context) error { return nil }

	tests := []struct {
		name    string
		mutate  func(*host.Config)
		wantErr string // empty means valid
	}{
		{name: "defaults", mutate: func(*host.Config) {}},
		{name: "negative leave timeout", wantErr: "negative leave timeout",
			mutate: func(c *host.Config) { c.LeaveTimeout = -time.Second }},
		{name: "dependency without name", wantErr: "dependency 0 needs a name",
			mutate: func(c *host.Config) {
				c.Dependencies = []host.Dependency{{Check: check}}
			}},
		{name: "dependency without check", wantErr: "dependency 1 needs a name and a check",
			mutate: func(c *host.Config) {
				c.Dependencies = []host.Dependency{{Name: "a", Check: check}, {Name: "b"}}
			}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := host.Config{Service: "catalog", ListenAddr: "127.0.0.1:0", Certificates: src,
				Tokens: tokenIssuer(t).Verifier(t)}
			tt.mutate(&cfg)

			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
