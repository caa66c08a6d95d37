package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/discovery"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

// TestResolverReportsStaleness stops Consul under a resolver that has an
// answer: the last known set stays, and failures are reported to gRPC as
// ErrStale only once the maximum staleness has passed.
func TestResolverReportsStaleness(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)
	srv := startServer(t, "a")
	register(t, client, "echo-a", srv)

	const maxStaleness = 1500 * time.Millisecond

	core, logs := observer.New(zapcore.DebugLevel)
	cc, _ := buildResolver(t, client, "echo",
		discovery.WithLogger(zap.New(core)),
		discovery.WithBackoff(20*time.Millisecond, 100*time.Millisecond),
		discovery.WithMaxStaleness(maxStaleness))

	want := "[" + srv.addr + "=echo-a]"
	waitState(t, cc, want)

	stopped := time.Now()
	if err := agent.Stop(); err != nil {
		t.Fatalf("stop consul: %v", err)
	}

	waitFor(t, 15*time.Second, "staleness reported", func() (bool, string) {
		_, errs := cc.snapshot()
		return len(errs) >= 2, fmt.Sprintf("%d errors", len(errs))
	})

	reported := time.Now()
	states, errs := cc.snapshot()

	for _, err := range errs {
		if !errors.Is(err, discovery.ErrStale) {
			t.Errorf("reported error %v does not wrap ErrStale", err)
		}
	}

	// The first failed query came after the stop, so no report may come
	// sooner than the maximum staleness after it.
	firstErr := logs.FilterMessageSnippet("older than max staleness").All()
	if len(firstErr) != 1 {
		t.Fatalf("staleness logged %d times, want once", len(firstErr))
	}

	if age := firstErr[0].Time.Sub(stopped); age < maxStaleness {
		t.Errorf("staleness reported %v after the stop, before the maximum %v", age, maxStaleness)
	}

	if got := describe(states[len(states)-1]); got != want {
		t.Errorf("state after the report is %s, want the last known %s", got, want)
	}

	t.Logf("first staleness report %v after the stop (checked at %v)",
		firstErr[0].Time.Sub(stopped).Round(time.Millisecond), reported.Sub(stopped))
}

// TestResolverEmptyAnswerAfterRestart restarts Consul, which forgets every
// registration: the empty answer that follows is held while instances may
// still register again, and believed once the maximum staleness passed.
func TestResolverEmptyAnswerAfterRestart(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name         string
		maxStaleness time.Duration
		reregister   bool
		wantFinal    string // "" means the instance's own state
	}{
		{name: "instance registers again", maxStaleness: time.Minute, reregister: true},
		{name: "nothing comes back", maxStaleness: 2 * time.Second, wantFinal: "[]"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			agent := testsupport.StartConsul(t)
			client := consulClient(t, agent)
			srv := startServer(t, "a")
			reg := register(t, client, "echo-a", srv)

			core, logs := observer.New(zapcore.DebugLevel)
			cc, _ := buildResolver(t, client, "echo",
				discovery.WithLogger(zap.New(core)),
				discovery.WithBackoff(20*time.Millisecond, 100*time.Millisecond),
				discovery.WithMaxStaleness(tt.maxStaleness))

			known := "[" + srv.addr + "=echo-a]"
			waitState(t, cc, known)

			restarted := time.Now()
			if err := agent.Restart(testContext(t)); err != nil {
				t.Fatalf("restart consul: %v", err)
			}

			waitFor(t, 15*time.Second, "empty answer held", func() (bool, string) {
				n := logs.FilterMessageSnippet("came back listing no passing instance").Len()
				return n == 1, fmt.Sprintf("%d holds logged", n)
			})

			if tt.reregister {
				if err := reg.Register(testContext(t)); err != nil {
					t.Fatalf("register again: %v", err)
				}

				waitPassing(t, client, "echo", "echo-a")
			}

			final := tt.wantFinal
			if final == "" {
				final = known
			}

			waitState(t, cc, final)

			// Once the instance was known, the state may not have become
			// empty if the instance came back.
			states, _ := cc.snapshot()
			seen := false
			for i, s := range states {
				seen = seen || describe(s) == known
				if seen && tt.reregister && describe(s) == "[]" {
					t.Errorf("state %d is empty although the instance came back", i)
				}
			}

			dropped := logs.FilterMessageSnippet("dropping the last known").All()
			if tt.reregister && len(dropped) != 0 {
				t.Errorf("last known instances dropped although the instance came back")
			}

			if !tt.reregister {
				if len(dropped) != 1 {
					t.Fatalf("drop logged %d times, want once", len(dropped))
				}

				if age := dropped[0].Time.Sub(restarted); age < tt.maxStaleness {
					t.Errorf("dropped %v after the restart began, before the maximum %v",
						age, tt.maxStaleness)
				}
			}
		})
	}
}

// TestMaintain starts a registrar's upkeep before its agent exists, then
// restarts the agent (which forgets the registration) and deregisters the
// instance behind its back: each time the registration comes back.
func TestMaintain(t *testing.T) {
	t.Parallel()

	agent := testsupport.NewConsul(t, consulagent.Config{})
	client := consulClient(t, agent)
	srv := startServer(t, "m")

	core, logs := observer.New(zapcore.DebugLevel)
	r, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: "echo", ID: "echo-m", Address: "127.0.0.1", Port: srv.port,
	}, discovery.WithLogger(zap.New(core)),
		discovery.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		discovery.WithWaitTime(2*time.Second))
	if err != nil {
		t.Fatalf("NewRegistrar: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})

	go func() {
		defer close(done)
		r.Maintain(ctx)
	}()

	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitFor(t, 10*time.Second, "outage logged", func() (bool, string) {
		n := logs.FilterMessageSnippet("consul agent request failed;").Len()
		return n == 1, fmt.Sprintf("%d warnings", n)
	})

	if err := agent.Start(testContext(t)); err != nil {
		t.Fatalf("start consul: %v", err)
	}

	waitPassing(t, client, "echo", "echo-m")

	steps := []struct {
		name    string
		disrupt func() error
	}{
		{name: "agent restarted", disrupt: func() error { return agent.Restart(testContext(t)) }},
		{name: "deregistered behind its back", disrupt: func() error {
			return client.Agent().ServiceDeregister("echo-m")
		}},
	}

	for i, step := range steps {
		if err := step.disrupt(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}

		waitFor(t, 15*time.Second, step.name+": registration lost", func() (bool, string) {
			n := logs.FilterMessage("consul agent lost the registration; registering again").Len()
			return n == i+1, fmt.Sprintf("%d losses logged", n)
		})

		waitPassing(t, client, "echo", "echo-m")
	}

	if n := logs.FilterMessageSnippet("consul agent request failed;").Len(); n != 2 {
		t.Errorf("outages logged %d times, want 2 (before the start, at the restart)", n)
	}

	start := time.Now()
	cancel()
	<-done

	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Maintain took %v to return after its context ended", took)
	}
}

// TestWaitNotPassing waits for an instance to leave the passing set after
// it reported NOT_SERVING, and gives up at the deadline while it passes.
func TestWaitNotPassing(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)

	tests := []struct {
		name       string
		notServing bool
		timeout    time.Duration
		wantErr    error
	}{
		{name: "not serving leaves", notServing: true, timeout: 15 * time.Second},
		{name: "still passing times out", timeout: 500 * time.Millisecond,
			wantErr: context.DeadlineExceeded},
	}

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, fmt.Sprint("w", i))
			id := fmt.Sprint("echo-w", i)
			reg := register(t, client, id, srv)
			waitPassing(t, client, "echo", id)

			if tt.notServing {
				srv.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			}

			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()

			err := reg.WaitNotPassing(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WaitNotPassing = %v, want %v", err, tt.wantErr)
			}

			ids, err := passingIDs(client, "echo")
			if err != nil {
				t.Fatalf("passing ids: %v", err)
			}

			listed := false
			for _, got := range ids {
				listed = listed || got == id
			}

			if listed == tt.notServing {
				t.Errorf("%s listed as passing = %v afterwards", id, listed)
			}
		})
	}
}

// TestRetryingServiceConfigThroughConsul sends calls through Consul to a
// healthy instance and one that fails every call with UNAVAILABLE, as an
// instance going away does: reads are retried on the healthy one and all
// succeed; CreateOrder, which is not safe to repeat, is never retried.
func TestRetryingServiceConfigThroughConsul(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)

	good, broken := startAPIServer(t, false), startAPIServer(t, true)
	register(t, client, "echo-good", good.testServer)
	register(t, client, "echo-broken", broken.testServer)
	waitPassing(t, client, "echo", "echo-good")
	waitPassing(t, client, "echo", "echo-broken")

	cfg, err := discovery.RetryingServiceConfig(discovery.DefaultRetryPolicy,
		catalogv1.CatalogService_ServiceDesc.ServiceName,
		ordersv1.OrderService_ServiceDesc.ServiceName)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(discovery.Target("echo"),
		grpc.WithResolvers(discovery.NewResolverBuilder(client)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(cfg))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}

	t.Cleanup(func() { _ = conn.Close() })

	// Wait until both instances are in the balancer, so round robin sends
	// calls to the broken one.
	waitSpread(t, healthpb.NewHealthClient(conn), "both instances in use",
		good.testServer, broken.testServer)

	const calls = 40

	catalog := catalogv1.NewCatalogServiceClient(conn)
	orders := ordersv1.NewOrderServiceClient(conn)

	tests := []struct {
		name        string
		call        func(context.Context) error
		wantRetried bool
	}{
		{name: "GetProduct is retried", wantRetried: true, call: func(ctx context.Context) error {
			_, err := catalog.GetProduct(ctx, &catalogv1.GetProductRequest{Id: "p-1"})
			return err
		}},
		{name: "CreateOrder is not", call: func(ctx context.Context) error {
			_, err := orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c"})
			return err
		}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			brokenBefore := broken.calls.Load()
			failed := 0

			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := tt.call(ctx)
				cancel()

				if err != nil {
					if status.Code(err) != codes.Unavailable {
						t.Fatalf("call failed with %v, want only UNAVAILABLE failures", err)
					}

					failed++
				}
			}

			hitBroken := int(broken.calls.Load() - brokenBefore)
			if hitBroken == 0 {
				t.Fatalf("no call reached the broken instance; the test proves nothing")
			}

			wantFailed := hitBroken
			if tt.wantRetried {
				wantFailed = 0
			}

			if failed != wantFailed {
				t.Errorf("%d of %d calls failed with %d attempts on the broken instance, "+
					"want %d failed", failed, calls, hitBroken, wantFailed)
			}

			t.Logf("%d calls, %d attempts on the broken instance, %d failed",
				calls, hitBroken, failed)
		})
	}
}

// apiServer serves catalog and orders methods, and counts the calls that
// reach it; a broken one fails each with UNAVAILABLE.
type apiServer struct {
	*testServer
	calls *atomic.Int64
}

func startAPIServer(t *testing.T, broken bool) apiServer {
	t.Helper()

	calls := &atomic.Int64{}
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		calls.Add(1)

		if broken {
			return nil, status.Error(codes.Unavailable, "instance going away")
		}

		return handler(ctx, req)
	}

	name := "good"
	if broken {
		name = "broken"
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	// The broken instance fails before the instance header is set: gRPC
	// retries only calls that got no response headers.
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(countBusiness(count),
		tagInstance("srv-"+name)))
	h := health.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	catalogv1.RegisterCatalogServiceServer(srv, apiFake{})
	ordersv1.RegisterOrderServiceServer(srv, apiFake{})

	done := make(chan struct{})

	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()

	t.Cleanup(func() {
		srv.Stop()
		<-done
	})

	return apiServer{
		testServer: &testServer{
			name:   "srv-" + name,
			addr:   lis.Addr().String(),
			port:   lis.Addr().(*net.TCPAddr).Port,
			srv:    srv,
			health: h,
		},
		calls: calls,
	}
}

// countBusiness applies next to every call except health checks.
func countBusiness(next grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		if info.FullMethod == healthpb.Health_Check_FullMethodName {
			return handler(ctx, req)
		}

		return next(ctx, req, info, handler)
	}
}

// apiFake answers the two methods the retry test calls.
type apiFake struct {
	catalogv1.UnimplementedCatalogServiceServer
	ordersv1.UnimplementedOrderServiceServer
}

func (apiFake) GetProduct(
	_ context.Context, req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	return &catalogv1.GetProductResponse{Product: &catalogv1.Product{Id: req.GetId()}}, nil
}

func (apiFake) CreateOrder(
	context.Context, *ordersv1.CreateOrderRequest,
) (*ordersv1.CreateOrderResponse, error) {
	return &ordersv1.CreateOrderResponse{Order: &ordersv1.Order{Id: "o-1"}}, nil
}

// tagInstance names the server in the instance header of every unary call.
func tagInstance(name string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(instanceHeader, name))

		return handler(ctx, req)
	}
}
