package accesslog_test

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// ExampleNewServer wires the access log into a gRPC server: the stats
// handler writes the line, Recovered is the recovery hook, and the capture
// interceptor sits innermost so the principal function sees what
// authentication added.
func ExampleNewServer() {
	logger := zap.NewNop()
	principal := func(context.Context) string { return "" }

	access, err := accesslog.NewServer(logger,
		accesslog.WithInstance("catalog-1a2b"),
		accesslog.WithPrincipal(principal),
		accesslog.WithSkip(func(method string) bool {
			return method == "/grpc.health.v1.Health/Check"
		}),
	)
	if err != nil {
		panic(err)
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(access.Recovered)

	_ = grpc.NewServer(
		grpc.StatsHandler(access),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recoverOpt),
			// ... authentication, validation ...
			access.UnaryServerInterceptor(),
		),
	)
}

// ExampleHTTP_Middleware wraps a router with the gateway's access log;
// httpcall.Capture lets the log see the ServeMux pattern that matched.
func ExampleHTTP_Middleware() {
	access, err := accesslog.NewHTTP(zap.NewNop())
	if err != nil {
		panic(err)
	}

	router := http.NewServeMux()
	router.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})

	_ = &http.Server{Handler: access.Middleware(httpcall.Capture(router))}
}
