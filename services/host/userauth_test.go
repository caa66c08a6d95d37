package host_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/services/host"
)

// workloadCreds are the mutual TLS credentials of the workload client
// calling server, with certificates from p.
func workloadCreds(
	t *testing.T,
	p *testsupport.TestPKI,
	client, server string,
) credentials.TransportCredentials {
	t.Helper()

	src := testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, client)))}

	creds, err := mtls.NewClientCredentials(src, testsupport.ID(t, server))
	if err != nil {
		t.Fatalf("client credentials of %s: %v", client, err)
	}

	return creds
}

// TestUserTokens calls, as a service the mTLS policy allows, methods whose
// user rules need a scope or nothing, with and without tokens: the guard
// in the host decides, whatever the gateway did before.
func TestUserTokens(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	catalog := startHost(t, p, "catalog", nil)
	orders := startHost(t, p, "orders", nil)

	tokens := catalog.tokens
	writer := tokens.Token(t, "alice", "orders.write")
	reader := tokens.Token(t, "bob", "orders.read")
	foreign := testsupport.NewTokenIssuer(t).Token(t, "mallory", "orders.write")

	ordersToCatalog := dial(t, catalog.Addr().String(), workloadCreds(t, p, "orders", "catalog"))
	gatewayToOrders := dial(t, orders.Addr().String(), workloadCreds(t, p, "gateway", "orders"))

	tests := []struct {
		name  string
		host  *runningHost
		conn  *grpc.ClientConn
		call  func(context.Context, *grpc.ClientConn) error
		token string
		code  codes.Code
		// logged is the reason the host's log must give for a refusal.
		logged string
	}{
		{name: "no token", host: catalog, conn: ordersToCatalog, call: reserveStock,
			code: codes.Unauthenticated, logged: "no bearer token"},
		{name: "token of another issuer", host: catalog, conn: ordersToCatalog,
			call: reserveStock, token: foreign, code: codes.Unauthenticated,
			logged: "unknown token issuer"},
		{name: "not a token", host: catalog, conn: ordersToCatalog, call: reserveStock,
			token: "not-a-jwt", code: codes.Unauthenticated, logged: "malformed token"},
		{name: "scope missing", host: catalog, conn: ordersToCatalog, call: reserveStock,
			token: reader, code: codes.PermissionDenied, logged: "orders.write"},
		{name: "scope present", host: catalog, conn: ordersToCatalog, call: reserveStock,
			token: writer, code: codes.OK},
		{name: "public method without token", host: catalog, conn: ordersToCatalog,
			call: getProduct, code: codes.OK},
		{name: "public method with a bad token", host: catalog, conn: ordersToCatalog,
			call: getProduct, token: foreign, code: codes.Unauthenticated,
			logged: "unknown token issuer"},
		{name: "health without token", host: catalog, conn: ordersToCatalog,
			call: checkHealth, code: codes.OK},
		{name: "stream without token", host: orders, conn: gatewayToOrders, call: watchOrder,
			code: codes.Unauthenticated, logged: "no bearer token"},
		{name: "stream, scope missing", host: orders, conn: gatewayToOrders, call: watchOrder,
			token: writer, code: codes.PermissionDenied, logged: "orders.read"},
		{name: "stream, scope present", host: orders, conn: gatewayToOrders, call: watchOrder,
			token: reader, code: codes.OK},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip := tt.host.logs.Len()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			if tt.token != "" {
				ctx = testsupport.WithToken(ctx, tt.token)
			}

			err := tt.call(ctx, tt.conn)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("call: code %v (%v), want %v", got, err, tt.code)
			}

			if tt.logged != "" {
				waitLog(t, tt.host.logs, skip, "call refused", "error", tt.logged)

				if msg := status.Convert(err).Message(); len(msg) > 100 {
					t.Errorf("message to the caller is %d bytes: %q", len(msg), msg)
				}
			}
		})
	}
}

// TestValidateTokensAndInstance checks the Config fields of this file's
// concern. The token verifier is required: a host that could not check
// user tokens would let any service inside the network act for any user.
func TestValidateTokensAndInstance(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	p.Issue(t, "catalog")
	tokens := tokenIssuer(t).Verifier(t)

	tests := []struct {
		name    string
		mutate  func(*host.Config)
		wantErr bool
	}{
		{name: "complete", mutate: func(*host.Config) {}},
		{name: "no token verifier", wantErr: true,
			mutate: func(c *host.Config) { c.Tokens = nil }},
		{name: "instance id given", mutate: func(c *host.Config) { c.InstanceID = "catalog-7" }},
		{name: "instance id with a space", wantErr: true,
			mutate: func(c *host.Config) { c.InstanceID = "catalog 7" }},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := host.Config{
				Service:      "catalog",
				ListenAddr:   "127.0.0.1:0",
				Certificates: p.Source(t, "catalog"),
				Tokens:       tokens,
			}
			tt.mutate(&cfg)

			err := cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}
