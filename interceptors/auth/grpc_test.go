package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/devissuer"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// verifierFunc is a fake TokenVerifier for unit tests of the interceptors
// alone; the tests through a real server use the real verifier.
type verifierFunc func(ctx context.Context, token string) (*jwtauth.Principal, error)

func (f verifierFunc) Verify(ctx context.Context, token string) (*jwtauth.Principal, error) {
	return f(ctx, token)
}

// fakeVerifier knows three tokens.
var fakeVerifier = verifierFunc(func(_ context.Context, token string) (*jwtauth.Principal, error) {
	switch token {
	case "writer":
		return &jwtauth.Principal{Subject: "w", Scopes: []string{"orders.write"}}, nil
	case "reader":
		return &jwtauth.Principal{Subject: "r", Scopes: []string{"orders.read"}}, nil
	case "stale":
		return nil, fmt.Errorf("test: %w", jwtauth.ErrKeysUnavailable)
	}
	return nil, fmt.Errorf("test: %w", jwtauth.ErrBadSignature)
})

func gatehousePolicy(t *testing.T) *authz.Policy {
	t.Helper()

	services, err := authz.FindServices(protoregistry.GlobalFiles,
		"gatehouse.catalog.v1.CatalogService", "gatehouse.orders.v1.OrderService")
	if err != nil {
		t.Fatalf("FindServices: %v", err)
	}
	p, err := authz.Load(services)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	return p
}

const (
	getProduct   = "/gatehouse.catalog.v1.CatalogService/GetProduct"
	reserveStock = "/gatehouse.catalog.v1.CatalogService/ReserveStock"
	watchOrder   = "/gatehouse.orders.v1.OrderService/WatchOrder"
)

func TestUnaryServerInterceptorUnit(t *testing.T) {
	g, err := auth.New(fakeVerifier, gatehousePolicy(t))
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	intercept := g.UnaryServerInterceptor()

	tests := []struct {
		name        string
		method      string
		auth        []string
		wantCode    codes.Code
		wantSubject string
	}{
		{"public without token", getProduct, nil, codes.OK, ""},
		{"public with a good token", getProduct, []string{"Bearer reader"}, codes.OK, "r"},
		{"public with a bad token", getProduct, []string{"Bearer junk"},
			codes.Unauthenticated, ""},
		{"private without token", reserveStock, nil, codes.Unauthenticated, ""},
		{"private, scope present", reserveStock, []string{"Bearer writer"}, codes.OK, "w"},
		{"private, scope missing", reserveStock, []string{"Bearer reader"},
			codes.PermissionDenied, ""},
		{"two authorization values", reserveStock, []string{"Bearer writer", "Bearer writer"},
			codes.Unauthenticated, ""},
		{"basic scheme", reserveStock, []string{"Basic d3JpdGVy"}, codes.Unauthenticated, ""},
		{"keys unavailable", reserveStock, []string{"Bearer stale"}, codes.Unavailable, ""},
		{"method without a rule", "/gatehouse.catalog.v1.CatalogService/DropTables",
			[]string{"Bearer writer"}, codes.PermissionDenied, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.auth != nil {
				md := metadata.MD{}
				for _, a := range tt.auth {
					md.Append("authorization", a)
				}
				// The server transport builds this context; here the
				// interceptor runs alone.
				ctx = metadata.NewIncomingContext(ctx, md)
			}

			called, subject := false, ""
			handler := func(ctx context.Context, _ any) (any, error) {
				called = true
				if p, ok := jwtauth.PrincipalFrom(ctx); ok {
					subject = p.Subject
				}
				return "done", nil
			}

			_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if called != (tt.wantCode == codes.OK) {
				t.Errorf("handler called = %v with code %v", called, tt.wantCode)
			}
			if subject != tt.wantSubject {
				t.Errorf("principal subject = %q, want %q", subject, tt.wantSubject)
			}
		})
	}
}

// stubStream is a fake grpc.ServerStream carrying only a context: the
// stream interceptor reads nothing else before the handler.
type stubStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stubStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptorUnit(t *testing.T) {
	g, err := auth.New(fakeVerifier, gatehousePolicy(t))
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	intercept := g.StreamServerInterceptor()

	tests := []struct {
		name     string
		token    string
		wantCode codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"reader", "reader", codes.OK},
		{"writer lacks orders.read", "writer", codes.PermissionDenied},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.NewIncomingContext(ctx,
					metadata.Pairs("authorization", "Bearer "+tt.token))
			}

			var subject string
			handler := func(_ any, ss grpc.ServerStream) error {
				p, ok := jwtauth.PrincipalFrom(ss.Context())
				if !ok {
					return errors.New("no principal in the stream context")
				}
				subject = p.Subject
				return nil
			}

			err := intercept(nil, stubStream{ctx: ctx},
				&grpc.StreamServerInfo{FullMethod: watchOrder, IsServerStream: true}, handler)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && subject != "r" {
				t.Errorf("handler saw subject %q, want r", subject)
			}
		})
	}
}

// Stub handlers: the interceptors are under test, so the services only
// report who called them. Server, transport, verifier and issuer are real.
type catalogStub struct {
	catalogv1.UnimplementedCatalogServiceServer
}

func (catalogStub) GetProduct(
	ctx context.Context,
	req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	return &catalogv1.GetProductResponse{Product: &catalogv1.Product{
		Id: req.GetId(), Name: subjectOf(ctx)}}, nil
}

func (catalogStub) ReserveStock(
	ctx context.Context,
	req *catalogv1.ReserveStockRequest,
) (*catalogv1.ReserveStockResponse, error) {
	return &catalogv1.ReserveStockResponse{ReservationId: subjectOf(ctx)}, nil
}

type ordersStub struct {
	ordersv1.UnimplementedOrderServiceServer
}

func (ordersStub) CreateOrder(
	ctx context.Context,
	_ *ordersv1.CreateOrderRequest,
) (*ordersv1.CreateOrderResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for key := range md {
		if strings.HasPrefix(key, "x-gatehouse-") {
			return nil, status.Errorf(codes.InvalidArgument, "client header %s reached orders", key)
		}
	}

	return &ordersv1.CreateOrderResponse{Order: &ordersv1.Order{CustomerId: subjectOf(ctx)}}, nil
}

func (ordersStub) WatchOrder(
	req *ordersv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse],
) error {
	return stream.Send(&ordersv1.WatchOrderResponse{Order: &ordersv1.Order{
		Id: req.GetId(), CustomerId: subjectOf(stream.Context())}})
}

func subjectOf(ctx context.Context) string {
	if p, ok := jwtauth.PrincipalFrom(ctx); ok {
		return p.Subject
	}

	return "anonymous"
}

// serveGRPC runs the stubs behind the guard's interceptors on 127.0.0.1
// and returns a client connection to them.
func serveGRPC(t *testing.T, g *auth.Guard) *grpc.ClientConn {
	t.Helper()

	return serveGRPCCounting(t, g, nil)
}

// serveGRPCCounting is serveGRPC counting, in calls, every call that
// reaches the server, before any check.
func serveGRPCCounting(t *testing.T, g *auth.Guard, calls *atomic.Int64) *grpc.ClientConn {
	t.Helper()

	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (any, error) {
		if calls != nil {
			calls.Add(1)
		}
		return handler(ctx, req)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(count, g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	)
	catalogv1.RegisterCatalogServiceServer(srv, catalogStub{})
	ordersv1.RegisterOrderServiceServer(srv, ordersStub{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	return conn
}

func withToken(token string) context.Context {
	ctx := context.Background()
	if token == "" {
		return ctx
	}

	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func TestGRPCServerUnary(t *testing.T) {
	f := newFixture(t)
	client := catalogv1.NewCatalogServiceClient(serveGRPC(t, f.guard))
	writer := f.mint(t, devissuer.ES256, f.claims("alice", "orders.write"))
	reader := f.mint(t, devissuer.RS256, f.claims("bob", "orders.read"))

	tests := []struct {
		name     string
		call     func(ctx context.Context) (string, error)
		token    string
		wantCode codes.Code
		wantWho  string
	}{
		{"public read, no token", getProductCall(client), "", codes.OK, "anonymous"},
		{"public read, token", getProductCall(client), reader, codes.OK, "bob"},
		{"reserve, no token", reserveCall(client), "", codes.Unauthenticated, ""},
		{"reserve, reader", reserveCall(client), reader, codes.PermissionDenied, ""},
		{"reserve, writer", reserveCall(client), writer, codes.OK, "alice"},
		{"reserve, forged", reserveCall(client), f.foreignToken(t, "forged"),
			codes.Unauthenticated, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			who, err := tt.call(withToken(tt.token))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if who != tt.wantWho {
				t.Errorf("handler saw %q, want %q", who, tt.wantWho)
			}
		})
	}
}

func getProductCall(c catalogv1.CatalogServiceClient) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		resp, err := c.GetProduct(ctx, &catalogv1.GetProductRequest{Id: "p-1"})
		return resp.GetProduct().GetName(), err
	}
}

func reserveCall(c catalogv1.CatalogServiceClient) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		resp, err := c.ReserveStock(ctx, &catalogv1.ReserveStockRequest{OrderId: "o-1"})
		return resp.GetReservationId(), err
	}
}

func TestGRPCServerStream(t *testing.T) {
	f := newFixture(t)
	client := ordersv1.NewOrderServiceClient(serveGRPC(t, f.guard))

	tests := []struct {
		name     string
		token    string
		wantCode codes.Code
		wantWho  string
	}{
		{"no token", "", codes.Unauthenticated, ""},
		{"expired", f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.IssuedAt, c.Expiry = c.IssuedAt.Add(-2*time.Hour), c.IssuedAt.Add(-time.Hour)
		}), codes.Unauthenticated, ""},
		{"reader", f.mint(t, devissuer.ES256, f.claims("bob", "orders.read")), codes.OK, "bob"},
		{"writer only", f.mint(t, devissuer.ES256, f.claims("alice", "orders.write")),
			codes.PermissionDenied, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.WatchOrder(withToken(tt.token),
				&ordersv1.WatchOrderRequest{Id: "o-1"})
			if err != nil {
				t.Fatalf("WatchOrder: %v", err)
			}

			msg, err := stream.Recv()
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Recv code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if got := msg.GetOrder().GetCustomerId(); got != tt.wantWho {
				t.Errorf("handler saw %q, want %q", got, tt.wantWho)
			}
		})
	}
}

func TestForwardClientInterceptors(t *testing.T) {
	f := newFixture(t)
	g := f.guard
	lisConn := serveGRPC(t, g)
	target := lisConn.Target()
	writer := f.mint(t, devissuer.ES256, f.claims("alice", "orders.write"))

	forwarding, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(auth.ForwardUnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(auth.ForwardStreamClientInterceptor()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = forwarding.Close() })

	// A handler's context as the server transport would build it for a call
	// made by alice; the outgoing calls below are real.
	incoming := metadata.NewIncomingContext(context.Background(),
		metadata.Pairs("authorization", "Bearer "+writer))

	tests := []struct {
		name     string
		conn     *grpc.ClientConn
		wantCode codes.Code
		wantWho  string
	}{
		{"forwarding connection", forwarding, codes.OK, "alice"},
		{"plain connection", lisConn, codes.Unauthenticated, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			who, err := reserveCall(catalogv1.NewCatalogServiceClient(tt.conn))(incoming)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if who != tt.wantWho {
				t.Errorf("catalog saw %q, want %q", who, tt.wantWho)
			}
		})
	}

	t.Run("stream", func(t *testing.T) {
		reader := f.mint(t, devissuer.ES256, f.claims("bob", "orders.read"))
		ctx := metadata.NewIncomingContext(context.Background(),
			metadata.Pairs("authorization", "Bearer "+reader))

		stream, err := ordersv1.NewOrderServiceClient(forwarding).WatchOrder(ctx,
			&ordersv1.WatchOrderRequest{Id: "o-1"})
		if err != nil {
			t.Fatalf("WatchOrder: %v", err)
		}
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if got := msg.GetOrder().GetCustomerId(); got != "bob" {
			t.Errorf("orders saw %q, want bob", got)
		}
	})
}

func TestNewValidates(t *testing.T) {
	p := gatehousePolicy(t)

	tests := []struct {
		name     string
		verifier auth.TokenVerifier
		policy   *authz.Policy
		opts     []auth.Option
	}{
		{"nil verifier", nil, p, nil},
		{"nil policy", fakeVerifier, nil, nil},
		{"nil logger", fakeVerifier, p, []auth.Option{auth.WithLogger(nil)}},
		{"quote in realm", fakeVerifier, p, []auth.Option{auth.WithRealm(`a"b`)}},
		{"empty stripped prefix", fakeVerifier, p,
			[]auth.Option{auth.WithStrippedHeaderPrefixes("")}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := auth.New(tt.verifier, tt.policy, tt.opts...); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}
