package ratelimit_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	rli "github.com/gatehouse-dev/gatehouse/interceptors/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// slow refills one token per 1000s, so nothing comes back during a test.
func slow(burst int) ratelimit.Rule { return ratelimit.Rule{Rate: 0.001, Burst: burst} }

// principalFromMetadata stands in for the principal an authentication
// interceptor would put in the context: the test client names itself in
// metadata.
func principalFromMetadata(ctx context.Context, _ string) (string, string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("x-test-principal")) == 0 {
		return "", "", false
	}

	class := ""
	if c := md.Get("x-test-class"); len(c) > 0 {
		class = c[0]
	}

	return md.Get("x-test-principal")[0], class, true
}

func asPrincipal(ctx context.Context, name, class string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-test-principal", name, "x-test-class", class)
}

func newInterceptor(
	t *testing.T,
	p ratelimit.Policy,
	key rli.KeyFunc,
	opts ...rli.Option,
) *rli.Interceptor {
	t.Helper()

	l, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	i, err := rli.New(l, p, key, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	return i
}

// serve runs a real gRPC server with the health service on 127.0.0.1
// behind the interceptor and returns the health server and a client.
func serve(t *testing.T, i *rli.Interceptor) (*health.Server, healthpb.HealthClient) {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(i.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(i.StreamServerInterceptor()),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	return hs, healthpb.NewHealthClient(conn)
}

// wantExhausted checks err is ResourceExhausted with a positive RetryInfo.
func wantExhausted(t *testing.T, err error) {
	t.Helper()

	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}

	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			if ri.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("RetryInfo delay %v, want positive", ri.GetRetryDelay().AsDuration())
			}

			return
		}
	}

	t.Errorf("ResourceExhausted without a RetryInfo detail: %v", st.Details())
}

// TestStreamCountsOncePerStream opens a server stream that carries several
// messages on a budget of two tokens: the stream takes one, a unary call
// the other, and the next call and the next stream are refused.
func TestStreamCountsOncePerStream(t *testing.T) {
	i := newInterceptor(t, ratelimit.Policy{Default: slow(2)}, rli.PeerIP)
	hs, client := serve(t, i)
	ctx := t.Context()

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	// Four messages on the one stream, each after a status change.
	statuses := []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
	}
	for n, want := range statuses {
		if n > 0 {
			hs.SetServingStatus("", want)
		}

		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", n, err)
		}

		if resp.GetStatus() != want {
			t.Fatalf("Recv %d: status %v, want %v", n, resp.GetStatus(), want)
		}
	}

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check with one token left: %v", err)
	}

	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	wantExhausted(t, err)

	refused, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	_, err = refused.Recv()
	wantExhausted(t, err)

	if got, want := i.Stats(), (ratelimit.Stats{Allowed: 2, Refused: 2}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestPrincipalsOnOneIP sends calls from two principals over one
// connection from 127.0.0.1: each has a bucket of its own, and a class
// override gives one of them more.
func TestPrincipalsOnOneIP(t *testing.T) {
	gold := slow(3)
	p := ratelimit.Policy{
		Default: slow(1),
		Classes: map[string]ratelimit.ClassPolicy{"gold": {Default: &gold}},
		Methods: map[string]ratelimit.Rule{"/grpc.health.v1.Health/List": slow(5)},
	}
	_, client := serve(t, newInterceptor(t, p, principalFromMetadata, rli.WithName("principal")))

	tests := []struct {
		name      string
		principal string
		class     string
		wantOK    int
	}{
		{name: "alice", principal: "alice", wantOK: 1},
		{name: "bob on the same IP", principal: "bob", wantOK: 1},
		{name: "carol on plan gold", principal: "carol", class: "gold", wantOK: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := asPrincipal(t.Context(), tt.principal, tt.class)
			for n := range tt.wantOK {
				if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatalf("call %d of %d allowed: %v", n+1, tt.wantOK, err)
				}
			}

			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			wantExhausted(t, err)
		})
	}

	// The per-method rule has a bucket of its own: alice's spent default
	// does not touch it.
	ctx := asPrincipal(t.Context(), "alice", "")
	if _, err := client.List(ctx, &healthpb.HealthListRequest{}); err != nil {
		t.Errorf("List under its own rule: %v", err)
	}

	// Calls without a principal are not limited by this interceptor.
	for range 3 {
		if _, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("anonymous Check: %v", err)
		}
	}
}

func TestDryRunRefusesNothing(t *testing.T) {
	i := newInterceptor(t, ratelimit.Policy{Default: slow(1), DryRun: true}, rli.PeerIP)
	_, client := serve(t, i)

	for n := range 3 {
		if _, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d in dry run: %v", n, err)
		}
	}

	if got, want := i.Stats(), (ratelimit.Stats{Allowed: 1, WouldRefuse: 2}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestUnaryInterceptorDirectly calls the interceptor with a fake handler.
func TestUnaryInterceptorDirectly(t *testing.T) {
	i := newInterceptor(t, ratelimit.Policy{Default: slow(1)}, rli.PeerIP)
	unary := i.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/a.B/C"}

	var calls int
	handler := func(context.Context, any) (any, error) {
		calls++
		return "ok", nil
	}

	tcpPeer := peer.NewContext(context.Background(),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5000}})
	otherPort := peer.NewContext(context.Background(),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5001}})
	unixPeer := peer.NewContext(context.Background(),
		&peer.Peer{Addr: &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}})

	tests := []struct {
		name     string
		ctx      context.Context
		wantCode codes.Code
	}{
		{name: "first call", ctx: tcpPeer, wantCode: codes.OK},
		{name: "same IP, other port", ctx: otherPort, wantCode: codes.ResourceExhausted},
		{name: "unix socket peer is not limited", ctx: unixPeer, wantCode: codes.OK},
		{name: "no peer is not limited", ctx: context.Background(), wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls
			_, err := unary(tt.ctx, "req", info, handler)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v, want %v (err %v)", got, tt.wantCode, err)
			}

			if ran := calls > before; ran != (tt.wantCode == codes.OK) {
				t.Errorf("handler ran = %v with code %v", ran, tt.wantCode)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	l, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	tests := []struct {
		name   string
		policy ratelimit.Policy
		key    rli.KeyFunc
		want   error
	}{
		{name: "nil key function", policy: ratelimit.Policy{Default: slow(1)},
			want: ratelimit.ErrInvalidOption},
		{name: "invalid policy", key: rli.PeerIP, want: ratelimit.ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := rli.New(l, tt.policy, tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("New: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRefusedErrorCarriesTheWait(t *testing.T) {
	st := status.Convert(rli.RefusedError(1500 * time.Millisecond))
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code %v", st.Code())
	}

	details := st.Details()
	if len(details) != 1 {
		t.Fatalf("details = %v, want one RetryInfo", details)
	}

	ri, ok := details[0].(*errdetails.RetryInfo)
	if !ok || ri.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Errorf("details = %v, want one RetryInfo of 1.5s", details)
	}
}
