package gateway_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
)

// healthInstance serves only grpc.health.v1 with the given status.
func healthInstance(t *testing.T, st healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	srv := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus("", st)
	healthpb.RegisterHealthServer(srv, h)

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()

	t.Cleanup(func() {
		srv.Stop()
		<-done
	})

	return lis.Addr().String()
}

// TestReadinessWithInstanceLeaving puts a backend of two instances behind
// round robin: one that answers NOT_SERVING, as an instance does while it
// shuts down, does not make the gateway unready; two do.
func TestReadinessWithInstanceLeaving(t *testing.T) {
	const (
		serving    = healthpb.HealthCheckResponse_SERVING
		notServing = healthpb.HealthCheckResponse_NOT_SERVING
	)

	tests := []struct {
		name   string
		states []healthpb.HealthCheckResponse_ServingStatus
		want   int
	}{
		{name: "both serving", states: []healthpb.HealthCheckResponse_ServingStatus{
			serving, serving}, want: http.StatusOK},
		{name: "one leaving", states: []healthpb.HealthCheckResponse_ServingStatus{
			notServing, serving}, want: http.StatusOK},
		{name: "both leaving", states: []healthpb.HealthCheckResponse_ServingStatus{
			notServing, notServing}, want: http.StatusServiceUnavailable},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := manual.NewBuilderWithScheme("test")
			var addrs []resolver.Address
			for _, st := range tt.states {
				addrs = append(addrs, resolver.Address{Addr: healthInstance(t, st)})
			}
			r.InitialState(resolver.State{Addresses: addrs})

			conn, err := grpc.NewClient("test:///backend", grpc.WithResolvers(r),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })

			waitConnected(t, conn, len(addrs))

			gw, err := gateway.New(gateway.Config{Catalog: conn, Orders: conn,
				OpenAPI: openapi.Document, ReadyTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}

			// Several rounds, so round robin starts on each instance.
			for i := range 4 {
				rec := httptest.NewRecorder()
				gw.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))

				if rec.Code != tt.want {
					t.Fatalf("/readyz round %d = %d %s, want %d", i, rec.Code, rec.Body, tt.want)
				}
			}
		})
	}
}

// waitConnected waits until calls on conn have reached n instances, so
// that round robin has a ready connection to each.
func waitConnected(t *testing.T, conn *grpc.ClientConn, n int) {
	t.Helper()

	client := healthpb.NewHealthClient(conn)
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)

	for len(seen) < n {
		if time.Now().After(deadline) {
			t.Fatalf("calls reached %d of %d instances", len(seen), n)
		}

		var p peer.Peer
		_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{},
			grpc.Peer(&p), grpc.WaitForReady(true))
		if err == nil && p.Addr != nil {
			seen[p.Addr.String()] = true
		}
	}
}
