package peerauth_test

import (
	"context"
	"net"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
)

// TestThroughServer runs the interceptors in a real gRPC server behind
// mutual TLS on 127.0.0.1, with a unary and a streaming method.
func TestThroughServer(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	core, logs := observer.New(zapcore.DebugLevel)

	a, err := peerauth.New(onlyGateway{}, peerauth.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}

	creds, err := mtls.NewServerCredentials(testsupport.StaticSource{
		B: p.Bundle(p.Leaf(t, testsupport.ID(t, "catalog")))})
	if err != nil {
		t.Fatal(err)
	}

	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.UnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.StreamInterceptor(a.StreamServerInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	tests := []struct {
		name   string
		caller string
		code   codes.Code
	}{
		{name: "allowed", caller: "gateway", code: codes.OK},
		{name: "not allowed", caller: "orders", code: codes.PermissionDenied},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientCreds, err := mtls.NewClientCredentials(testsupport.StaticSource{
				B: p.Bundle(p.Leaf(t, testsupport.ID(t, tt.caller)))}, testsupport.ID(t, "catalog"))
			if err != nil {
				t.Fatal(err)
			}

			conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
				grpc.WithTransportCredentials(clientCreds))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()

			client := healthpb.NewHealthClient(conn)
			ctx := context.Background()

			_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
			if got := status.Code(err); got != tt.code {
				t.Errorf("unary Check: code %v (%v), want %v", got, err, tt.code)
			}

			stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}

			_, err = stream.Recv()
			if got := status.Code(err); got != tt.code {
				t.Errorf("streaming Watch: code %v (%v), want %v", got, err, tt.code)
			}
		})
	}

	if n := logs.FilterMessage("call refused: permission denied").Len(); n != 2 {
		t.Errorf("%d refusals logged, want 2 (unary and streaming)", n)
	}
}
