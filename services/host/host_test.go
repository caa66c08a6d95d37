package host_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/pki"
	"github.com/gatehouse-dev/gatehouse/policy"
	"github.com/gatehouse-dev/gatehouse/services/host"
)

const orderID = "7a0f4e2c-94d4-4f9b-8d55-1f0e2f8b9c01"

func getProduct(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := catalogv1.NewCatalogServiceClient(conn).GetProduct(ctx,
		&catalogv1.GetProductRequest{Id: "p-1001"})

	return err
}

func reserveStock(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := catalogv1.NewCatalogServiceClient(conn).ReserveStock(ctx,
		&catalogv1.ReserveStockRequest{OrderId: "o-1",
			Items: []*catalogv1.StockItem{{ProductId: "p-1001", Quantity: 1}}})

	return err
}

func watchOrder(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := ordersv1.NewOrderServiceClient(conn).WatchOrder(ctx,
		&ordersv1.WatchOrderRequest{Id: orderID})
	if err != nil {
		return err
	}

	_, err = stream.Recv()

	return err
}

// wantLog is a log line a case must produce.
type wantLog struct {
	msg, field, contains string
}

// TestCallerAuthentication covers every way a caller can fail or pass mutual
// TLS and per-method authorization, each over a real handshake on
// 127.0.0.1, with the outcome the caller sees and the log line the refusal
// leaves.
func TestCallerAuthentication(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	other := testsupport.NewTestPKI(t) // a CA nobody trusts

	catalog := startHost(t, p, "catalog", nil)
	orders := startHost(t, p, "orders", nil)

	// Both hosts trust the test's issuer. Calls that pass mTLS need a user
	// token with the method's scope; TestUserTokens covers the token checks.
	writer := catalog.tokens.Token(t, "alice", "orders.write")
	reader := catalog.tokens.Token(t, "alice", "orders.read")

	now := time.Now()
	leaf := func(td, service string, opts ...pki.Option) *tls.Certificate {
		id, err := identity.New(td, service)
		if err != nil {
			t.Fatal(err)
		}

		return testsupport.TLSCertificate(p.Leaf(t, id, opts...))
	}

	// workload returns the credentials a real workload uses: its certificate
	// from p, and the expected identity of the server.
	workload := func(client, server string) func(*zap.Logger) credentials.TransportCredentials {
		return func(logger *zap.Logger) credentials.TransportCredentials {
			src := testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, client)))}

			creds, err := mtls.NewClientCredentials(src, testsupport.ID(t, server),
				mtls.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}

			return creds
		}
	}
	raw := func(cert *tls.Certificate) func(*zap.Logger) credentials.TransportCredentials {
		return func(*zap.Logger) credentials.TransportCredentials { return rawTLS(t, p, cert) }
	}

	tests := []struct {
		name  string
		creds func(*zap.Logger) credentials.TransportCredentials
		host  *runningHost
		call  func(context.Context, *grpc.ClientConn) error
		code  codes.Code
		// token is the user's bearer token, if the call carries one.
		token string
		// serverLog is expected in the host's log, clientLog in the client's.
		serverLog, clientLog *wantLog
	}{
		{
			name: "plaintext client",
			creds: func(*zap.Logger) credentials.TransportCredentials {
				return insecure.NewCredentials()
			},
			host: catalog, call: getProduct, code: codes.Unavailable,
			serverLog: &wantLog{"tls handshake refused", "error", "does not look like a TLS handshake"},
		},
		{
			name: "client without certificate", creds: raw(nil),
			host: catalog, call: getProduct, code: codes.Unavailable,
			serverLog: &wantLog{"tls handshake refused", "error", "didn't provide a certificate"},
		},
		{
			name: "certificate from another ca",
			creds: raw(testsupport.TLSCertificate(
				other.Leaf(t, testsupport.ID(t, "orders")))),
			host: catalog, call: getProduct, code: codes.Unavailable,
			serverLog: &wantLog{"tls handshake refused", "error", "unknown authority"},
		},
		{
			name: "expired certificate",
			creds: raw(leaf(identity.DefaultTrustDomain, "orders",
				pki.WithValidity(now.Add(-48*time.Hour), now.Add(-24*time.Hour)))),
			host: catalog, call: getProduct, code: codes.Unavailable,
			serverLog: &wantLog{"tls handshake refused", "error", "expired"},
		},
		{
			name: "certificate not yet valid",
			creds: raw(leaf(identity.DefaultTrustDomain, "orders",
				pki.WithValidity(now.Add(24*time.Hour), now.Add(48*time.Hour)))),
			host: catalog, call: getProduct, code: codes.Unavailable,
			serverLog: &wantLog{"tls handshake refused", "error", "is before"},
		},
		{
			name:  "valid certificate of another trust domain",
			creds: raw(leaf("other.local", "orders")),
			host:  catalog, call: getProduct, code: codes.Unauthenticated,
			serverLog: &wantLog{"call refused: unauthenticated", "reason",
				`spiffe://other.local/svc/orders, want trust domain "gatehouse.local"`},
		},
		{
			name:  "identity not allowed, unary",
			creds: workload("gateway", "catalog"),
			host:  catalog, call: reserveStock, code: codes.PermissionDenied,
			serverLog: &wantLog{"call refused: permission denied", "reason",
				`allows only orders (proto rule), not "gateway"`},
		},
		{
			name:  "identity not allowed, streaming",
			creds: workload("catalog", "orders"),
			host:  orders, call: watchOrder, code: codes.PermissionDenied,
			serverLog: &wantLog{"call refused: permission denied", "caller",
				"spiffe://gatehouse.local/svc/catalog"},
		},
		{
			name:  "consul identity may only check health",
			creds: workload("consul", "catalog"),
			host:  catalog, call: getProduct, code: codes.PermissionDenied,
			serverLog: &wantLog{"call refused: permission denied", "method",
				"/gatehouse.catalog.v1.CatalogService/GetProduct"},
		},
		{
			name:  "server with another identity than dialed",
			creds: workload("orders", "orders"), // dials catalog's address
			host:  catalog, call: getProduct, code: codes.Unavailable,
			clientLog: &wantLog{"tls handshake with server refused", "error",
				"not orders.svc.gatehouse.local"},
		},
		{
			name:  "allowed, unary",
			creds: workload("orders", "catalog"),
			host:  catalog, call: reserveStock, code: codes.OK, token: writer,
		},
		{
			name:  "allowed, streaming",
			creds: workload("gateway", "orders"),
			host:  orders, call: watchOrder, code: codes.OK, token: reader,
		},
		{
			name:  "health check by the consul identity",
			creds: workload("consul", "catalog"),
			host:  catalog, call: checkHealth, code: codes.OK,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, clientLogs := observer.New(zapcore.DebugLevel)
			skip := tt.host.logs.Len()

			conn := dial(t, tt.host.Addr().String(), tt.creds(zap.New(core)))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			if tt.token != "" {
				ctx = testsupport.WithToken(ctx, tt.token)
			}

			err := tt.call(ctx, conn)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("call: code %v (%v), want %v", got, err, tt.code)
			}

			if tt.serverLog != nil {
				waitLog(t, tt.host.logs, skip, tt.serverLog.msg, tt.serverLog.field,
					tt.serverLog.contains)
			}

			if tt.clientLog != nil {
				waitLog(t, clientLogs, 0, tt.clientLog.msg, tt.clientLog.field,
					tt.clientLog.contains)
			}

			if tt.code != codes.OK {
				// The caller learns nothing beyond the code.
				if msg := status.Convert(err).Message(); len(msg) > 200 {
					t.Errorf("message to the caller is %d bytes: %q", len(msg), msg)
				}
			}
		})
	}
}

func TestCallerInContext(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	catalog := startHost(t, p, "catalog", nil)

	client := p.Leaf(t, testsupport.ID(t, "gateway"))
	creds, err := mtls.NewClientCredentials(testsupport.StaticSource{B: p.Bundle(client)},
		testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	conn := dial(t, catalog.Addr().String(), creds)

	resp, err := catalogv1.NewCatalogServiceClient(conn).GetProduct(context.Background(),
		&catalogv1.GetProductRequest{Id: "p-1001"})
	if err != nil {
		t.Fatalf("GetProduct: %v", err)
	}

	if got, want := resp.GetProduct().GetDescription(), "spiffe://gatehouse.local/svc/gateway"; got != want {
		t.Errorf("handler saw caller %q, want %q", got, want)
	}

	if got, want := resp.GetProduct().GetName(), client.Cert.SerialNumber.Text(16); got != want {
		t.Errorf("handler saw certificate serial %q, want %q", got, want)
	}
}

func TestDryRun(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	catalog := startHost(t, p, "catalog", func(c *host.Config) { c.AuthDryRun = true })

	creds := func(td, service string) credentials.TransportCredentials {
		id, err := identity.New(td, service)
		if err != nil {
			t.Fatal(err)
		}

		c, err := mtls.NewClientCredentials(testsupport.StaticSource{B: p.Bundle(p.Leaf(t, id))},
			testsupport.ID(t, "catalog"))
		if err != nil {
			t.Fatal(err)
		}

		return c
	}

	tests := []struct {
		name    string
		td      string
		code    codes.Code
		wantLog wantLog
	}{
		{
			name: "denial is only logged", td: identity.DefaultTrustDomain, code: codes.OK,
			wantLog: wantLog{"dry run: call would be denied", "caller",
				"spiffe://gatehouse.local/svc/gateway"},
		},
		{
			name: "unauthenticated is still refused", td: "other.local",
			code:    codes.Unauthenticated,
			wantLog: wantLog{"call refused: unauthenticated", "reason", "trust domain"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip := catalog.logs.Len()
			conn := dial(t, catalog.Addr().String(), creds(tt.td, "gateway"))

			// The token is good: dry run is about the calling service only.
			ctx := testsupport.WithToken(context.Background(),
				catalog.tokens.Token(t, "alice", "orders.write"))

			err := reserveStock(ctx, conn)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("ReserveStock as gateway: code %v (%v), want %v", got, err, tt.code)
			}

			waitLog(t, catalog.logs, skip, tt.wantLog.msg, tt.wantLog.field, tt.wantLog.contains)
		})
	}
}

// TestRefusesMethodWithoutRule registers a service whose methods carry no
// access rule: Run must stop before serving, naming the methods.
func TestRefusesMethodWithoutRule(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	p.Issue(t, "catalog")

	h, err := hostNew(t, "catalog", p.Source(t, "catalog"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}

	testgrpc.RegisterTestServiceServer(h.Server(), testgrpc.UnimplementedTestServiceServer{})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err = h.Run(ctx)
	if !errors.Is(err, policy.ErrMissingRule) {
		t.Fatalf("Run = %v, want an error wrapping policy.ErrMissingRule", err)
	}

	if !strings.Contains(err.Error(), "/grpc.testing.TestService/EmptyCall") {
		t.Errorf("error %q does not name the method", err)
	}
}
