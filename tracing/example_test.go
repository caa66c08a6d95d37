package tracing_test

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/tracing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ExampleNew sets up tracing with export off and hands its pieces to a gRPC
// server, a gRPC client and the HTTP edge.
func ExampleNew() {
	tr, err := tracing.New(tracing.Config{ServiceName: "gateway"})
	if err != nil {
		panic(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()

	_ = grpc.NewServer(tr.ServerOptions()...)
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1",
		append(tr.DialOptions(),
			grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer func() { _ = conn.Close() }()

	_ = &http.Server{Handler: tr.Middleware(http.NotFoundHandler())}
	// Output:
}
