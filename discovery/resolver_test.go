package discovery_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

func TestTarget(t *testing.T) {
	tests := []struct {
		service string
		want    string
	}{
		{service: "echo", want: "consul:///echo"},
		{service: "user-api", want: "consul:///user-api"},
	}

	for _, tt := range tests {
		if got := discovery.Target(tt.service); got != tt.want {
			t.Errorf("Target(%q) = %q, want %q", tt.service, got, tt.want)
		}

		u, err := url.Parse(discovery.Target(tt.service))
		if err != nil {
			t.Fatalf("parse Target(%q): %v", tt.service, err)
		}

		target := resolver.Target{URL: *u}
		if u.Scheme != discovery.Scheme || target.Endpoint() != tt.service {
			t.Errorf("Target(%q) parses to scheme %q endpoint %q", tt.service, u.Scheme,
				target.Endpoint())
		}
	}
}

func TestBuildRejectsBadTargets(t *testing.T) {
	b := discovery.NewResolverBuilder(offlineClient(t))

	if b.Scheme() != "consul" {
		t.Errorf("Scheme() = %q, want consul", b.Scheme())
	}

	tests := []struct {
		target  string
		wantErr string
	}{
		{target: "consul://127.0.0.1:8500/echo", wantErr: "authority"},
		{target: "consul:///", wantErr: "service name"},
		{target: "consul:///Echo", wantErr: "service name"},
		{target: "consul:///echo/v1", wantErr: "service name"},
	}

	for _, tt := range tests {
		u, err := url.Parse(tt.target)
		if err != nil {
			t.Fatalf("parse %q: %v", tt.target, err)
		}

		r, err := b.Build(resolver.Target{URL: *u}, &fakeCC{}, resolver.BuildOptions{})
		if err == nil {
			r.Close()
			t.Errorf("Build(%q) succeeded, want error containing %q", tt.target, tt.wantErr)

			continue
		}

		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Build(%q) error = %q, want it to contain %q", tt.target, err, tt.wantErr)
		}
	}
}

func TestNewResolverBuilderPanicsOnMisuse(t *testing.T) {
	client := offlineClient(t)

	tests := []struct {
		name   string
		client *api.Client
		opts   []discovery.Option
	}{
		{name: "nil client", client: nil},
		{name: "nil logger", client: client, opts: []discovery.Option{discovery.WithLogger(nil)}},
		{name: "zero wait", client: client, opts: []discovery.Option{discovery.WithWaitTime(0)}},
		{name: "backoff reversed", client: client,
			opts: []discovery.Option{discovery.WithBackoff(time.Second, time.Millisecond)}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewResolverBuilder did not panic")
				}
			}()

			discovery.NewResolverBuilder(tt.client, tt.opts...)
		})
	}
}

// buildResolver builds a resolver for service with a fake ClientConn and
// closes it at the end of the test.
func buildResolver(
	t *testing.T, client *api.Client, service string, opts ...discovery.Option,
) (*fakeCC, resolver.Resolver) {
	t.Helper()

	u, err := url.Parse(discovery.Target(service))
	if err != nil {
		t.Fatalf("parse target: %v", err)
	}

	cc := &fakeCC{}

	r, err := discovery.NewResolverBuilder(client, opts...).
		Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s): %v", u, err)
	}

	t.Cleanup(r.Close)

	return cc, r
}

// describe renders a state as "addr=id" pairs in order.
func describe(s resolver.State) string {
	parts := make([]string, 0, len(s.Addresses))

	for _, a := range s.Addresses {
		id, _ := discovery.InstanceID(a)
		parts = append(parts, a.Addr+"="+id)
	}

	return "[" + strings.Join(parts, " ") + "]"
}

// waitState waits until the latest pushed state renders as want.
func waitState(t *testing.T, cc *fakeCC, want string) {
	t.Helper()

	waitFor(t, 15*time.Second, "resolver state "+want, func() (bool, string) {
		states, errs := cc.snapshot()
		if len(states) == 0 {
			return false, fmt.Sprintf("no state yet, errors %v", errs)
		}

		got := describe(states[len(states)-1])

		return got == want, got
	})
}

func register(t *testing.T, client *api.Client, id string, srv *testServer) *discovery.Registrar {
	t.Helper()

	r, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: "echo",
		ID:      id,
		Address: "127.0.0.1",
		Port:    srv.port,
		Meta:    map[string]string{"version": "test"},
	})
	if err != nil {
		t.Fatalf("NewRegistrar(%s): %v", id, err)
	}

	if err := r.Register(testContext(t)); err != nil {
		t.Fatalf("Register(%s): %v", id, err)
	}

	return r
}

func TestResolverFollowsPassingSet(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)

	var (
		hookMu    sync.Mutex
		hookCalls []string
	)
	hook := func(service string, ids []string) {
		hookMu.Lock()
		defer hookMu.Unlock()
		hookCalls = append(hookCalls, service+":"+strings.Join(ids, ","))
	}
	cc, _ := buildResolver(t, client, "echo", discovery.WithWaitTime(5*time.Second),
		discovery.WithChangeHook(hook))

	// Nothing registered yet: the empty set is pushed, not withheld.
	waitState(t, cc, "[]")

	a, b := startServer(t, "a"), startServer(t, "b")
	register(t, client, "echo-a", a)
	register(t, client, "echo-b", b)

	both := []string{a.addr + "=echo-a", b.addr + "=echo-b"}
	slices.Sort(both)
	waitState(t, cc, "["+strings.Join(both, " ")+"]")

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitState(t, cc, "["+b.addr+"=echo-b]")

	b.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitState(t, cc, "[]")

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitState(t, cc, "["+a.addr+"=echo-a]")

	states, errs := cc.snapshot()
	if len(errs) != 0 {
		t.Errorf("resolver reported errors with a healthy Consul: %v", errs)
	}

	hookMu.Lock()
	calls := append([]string(nil), hookCalls...)
	hookMu.Unlock()
	if len(calls) != len(states) || calls[len(calls)-1] != "echo:echo-a" {
		t.Errorf("change hook saw %v for %d pushed states; want one call per state, "+
			"the last echo:echo-a", calls, len(states))
	}

	for i := 1; i < len(states); i++ {
		if describe(states[i]) == describe(states[i-1]) {
			t.Errorf("state %d repeats %s; only changes should be pushed", i, describe(states[i]))
		}
	}

	for _, s := range states {
		if len(s.Endpoints) != len(s.Addresses) {
			t.Errorf("state has %d endpoints for %d addresses", len(s.Endpoints), len(s.Addresses))
		}
	}
}

// closedPort returns a loopback address that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	addr := lis.Addr().String()
	_ = lis.Close()

	return addr
}

func TestResolverReportsErrorsBeforeFirstAnswer(t *testing.T) {
	t.Parallel()

	client, err := api.NewClient(&api.Config{Address: closedPort(t), Scheme: "http"})
	if err != nil {
		t.Fatalf("create consul client: %v", err)
	}

	core, logs := observer.New(zapcore.DebugLevel)
	cc, r := buildResolver(t, client, "echo",
		discovery.WithLogger(zap.New(core)),
		discovery.WithBackoff(10*time.Millisecond, 50*time.Millisecond))

	waitFor(t, 10*time.Second, "three reported errors", func() (bool, string) {
		_, errs := cc.snapshot()
		return len(errs) >= 3, fmt.Sprintf("%d errors", len(errs))
	})

	start := time.Now()
	r.Close()

	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v, want it prompt", took)
	}

	states, errs := cc.snapshot()
	if len(states) != 0 {
		t.Errorf("resolver pushed %d states without ever reaching Consul", len(states))
	}

	if !strings.Contains(errs[0].Error(), `service "echo"`) {
		t.Errorf("reported error %q should name the service", errs[0])
	}

	if n := logs.FilterMessageSnippet("consul query failed;").Len(); n != 1 {
		t.Errorf("outage logged %d times at warn, want once", n)
	}
}

func TestResolverKeepsLastKnownAcrossOutage(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)
	srv := startServer(t, "a")
	reg := register(t, client, "echo-a", srv)

	core, logs := observer.New(zapcore.DebugLevel)

	// The default 30s wait: after the restart the resolver must not sit in a
	// blocking query on an index the fresh agent has not reached.
	cc, _ := buildResolver(t, client, "echo",
		discovery.WithLogger(zap.New(core)),
		discovery.WithBackoff(20*time.Millisecond, 200*time.Millisecond))

	want := "[" + srv.addr + "=echo-a]"
	waitState(t, cc, want)

	if err := agent.Stop(); err != nil {
		t.Fatalf("stop consul: %v", err)
	}

	waitFor(t, 10*time.Second, "several failed queries", func() (bool, string) {
		n := logs.FilterMessageSnippet("consul query failed again").Len()
		return n >= 3, fmt.Sprintf("%d retries logged", n)
	})

	states, errs := cc.snapshot()
	if got := describe(states[len(states)-1]); got != want {
		t.Errorf("during the outage the state became %s, want the last known %s", got, want)
	}

	if len(errs) != 0 {
		t.Errorf("resolver reported %d errors after a successful answer: %v", len(errs), errs)
	}

	start := time.Now()
	if err := agent.Restart(testContext(t)); err != nil {
		t.Fatalf("restart consul: %v", err)
	}

	t.Logf("consul restart took %v", time.Since(start))

	// A -dev agent without a data dir forgets its services, as a real
	// instance would find after its agent lost state: register again.
	if err := reg.Register(testContext(t)); err != nil {
		t.Fatalf("register again: %v", err)
	}

	waitFor(t, 15*time.Second, "resolver saw consul again", func() (bool, string) {
		n := logs.FilterMessageSnippet("consul answering again").Len()
		return n >= 1, fmt.Sprintf("%d recoveries logged", n)
	})

	waitState(t, cc, want)

	if n := logs.FilterMessageSnippet("consul query failed;").Len(); n != 1 {
		t.Errorf("outage logged %d times at warn, want once", n)
	}

	if n := logs.FilterMessageSnippet("consul answering again").Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// dialEcho connects to the echo service through Consul with round robin.
func dialEcho(t *testing.T, client *api.Client) healthpb.HealthClient {
	t.Helper()

	conn, err := grpc.NewClient(discovery.Target("echo"),
		grpc.WithResolvers(discovery.NewResolverBuilder(client,
			discovery.WithWaitTime(5*time.Second))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", discovery.Target("echo"), err)
	}

	t.Cleanup(func() { _ = conn.Close() })

	return healthpb.NewHealthClient(conn)
}

// spread makes n Check calls and counts them per answering server; failed
// calls count under "error".
func spread(hc healthpb.HealthClient, n int) map[string]int {
	counts := map[string]int{}

	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)

		var md metadata.MD

		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))

		cancel()

		switch ids := md.Get(instanceHeader); {
		case err != nil:
			counts["error"]++
		case len(ids) != 1:
			counts["no-header"]++
		default:
			counts[ids[0]]++
		}
	}

	return counts
}

// waitSpread waits until n calls are answered exactly by the servers named.
func waitSpread(t *testing.T, hc healthpb.HealthClient, what string, servers ...*testServer) {
	t.Helper()

	start := time.Now()

	waitFor(t, 15*time.Second, what, func() (bool, string) {
		counts := spread(hc, 20)

		for _, s := range servers {
			if counts[s.name] == 0 {
				return false, fmt.Sprint(counts)
			}
		}

		total := 0
		for _, s := range servers {
			total += counts[s.name]
		}

		return total == 20, fmt.Sprint(counts)
	})

	t.Logf("%s: took %v", what, time.Since(start))
}

func TestRoundRobinThroughConsul(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)

	a, b := startServer(t, "a"), startServer(t, "b")
	regA := register(t, client, "echo-a", a)
	register(t, client, "echo-b", b)

	waitPassing(t, client, "echo", "echo-a")
	waitPassing(t, client, "echo", "echo-b")

	hc := dialEcho(t, client)

	waitSpread(t, hc, "calls reach both instances", a, b)

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitSpread(t, hc, "not serving instance dropped", b)

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitSpread(t, hc, "recovered instance back", a, b)

	if err := regA.Deregister(testContext(t)); err != nil {
		t.Fatalf("Deregister(echo-a): %v", err)
	}

	waitSpread(t, hc, "deregistered instance dropped", b)

	ids, err := passingIDs(client, "echo")
	if err != nil || !slices.Equal(ids, []string{"echo-b"}) {
		t.Errorf("passing echo instances after deregistering echo-a = %v, %v; want [echo-b]",
			ids, err)
	}

	if err := regA.Register(testContext(t)); err != nil {
		t.Fatalf("Register(echo-a) again: %v", err)
	}

	waitSpread(t, hc, "re-registered instance back", a, b)

	b.srv.Stop()
	waitSpread(t, hc, "traffic moved off the stopped server", a)

	waitFor(t, 15*time.Second, "consul sees the stopped server fail", func() (bool, string) {
		ids, err := passingIDs(client, "echo")
		if err != nil {
			return false, err.Error()
		}

		return slices.Equal(ids, []string{"echo-a"}), fmt.Sprint(ids)
	})
}
