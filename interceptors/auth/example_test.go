package auth_test

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/authz"
	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Wiring a service: one verifier and one policy, interceptors in a fixed
// order, health checks exempted explicitly.
func Example_service() {
	logger := zap.NewNop()

	verifier, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer: "http://127.0.0.1:8081", Audiences: []string{"gatehouse"}, Discovery: true,
	}}, jwtauth.WithLogger(logger))
	if err != nil {
		panic(err)
	}
	defer func() { _ = verifier.Close() }()
	if err := verifier.Start(context.Background()); err != nil {
		return // not ready: refuse to serve
	}

	services, err := authz.FindServices(protoregistry.GlobalFiles,
		"gatehouse.catalog.v1.CatalogService")
	if err != nil {
		panic(err)
	}
	public := &policyv1.UserRule{Public: true}
	policy, err := authz.Load(services,
		authz.WithRule("/grpc.health.v1.Health/Check", public),
		authz.WithRule("/grpc.health.v1.Health/Watch", public))
	if err != nil {
		panic(err) // a method without a rule: refuse to start
	}

	guard, err := auth.New(verifier, policy, auth.WithLogger(logger))
	if err != nil {
		panic(err)
	}

	// Order, first = outermost: authentication before validation, so an
	// anonymous caller learns nothing about the request rules.
	_ = grpc.NewServer(
		grpc.ChainUnaryInterceptor(guard.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(guard.StreamServerInterceptor()),
	)

	// Outgoing calls on the caller's behalf carry its token.
	_ = []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(auth.ForwardUnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(auth.ForwardStreamClientInterceptor()),
	}
}

// Wiring the edge: the middleware runs before the handler that would call
// a backend.
func Example_gateway() {
	var guard *auth.Guard // built as in Example_service
	if guard == nil {
		return
	}

	resolve := func(*http.Request) (string, bool) {
		return "", false // the gateway's route table
	}
	mux := http.NotFoundHandler() // the grpc-gateway mux

	_ = &http.Server{Handler: guard.HTTPMiddleware(resolve)(mux)}
}
