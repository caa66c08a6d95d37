// Package platform runs Gatehouse's sample services in process for tests:
// the real catalog and orders servers on 127.0.0.1 and a grpc-gateway mux
// with their REST routes. It is separate from testsupport so that the
// services' own tests can use testsupport without an import cycle.
package platform

import (
	"context"
	"testing"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// StartCatalog serves the real catalog service, seeded with the sample
// products, on 127.0.0.1 with the given server options until the test ends.
// It returns the address to dial.
func StartCatalog(t testing.TB, opts ...grpc.ServerOption) string {
	t.Helper()

	store, err := catalog.NewStore(catalog.SampleProducts())
	if err != nil {
		t.Fatalf("catalog store: %v", err)
	}
	svc, err := catalog.NewServer(store)
	if err != nil {
		t.Fatalf("catalog server: %v", err)
	}

	srv := grpc.NewServer(opts...)
	catalogv1.RegisterCatalogServiceServer(srv, svc)

	return testsupport.ServeGRPC(t, srv)
}

// StartOrders serves the real orders service on 127.0.0.1 with the given
// server options until the test ends, reserving stock through catalogConn.
// It returns the address to dial.
func StartOrders(
	t testing.TB,
	catalogConn grpc.ClientConnInterface,
	opts ...grpc.ServerOption,
) string {
	t.Helper()

	svc, err := orders.NewServer(orders.NewStore(),
		catalogv1.NewCatalogServiceClient(catalogConn))
	if err != nil {
		t.Fatalf("orders server: %v", err)
	}

	srv := grpc.NewServer(opts...)
	ordersv1.RegisterOrderServiceServer(srv, svc)
	t.Cleanup(svc.Close)

	return testsupport.ServeGRPC(t, srv)
}

// GatewayMux returns a grpc-gateway mux with the REST routes of the catalog
// and orders services, calling catalogConn and ordersConn; a nil connection
// leaves that service's routes out.
func GatewayMux(
	t testing.TB,
	catalogConn, ordersConn grpc.ClientConnInterface,
	opts ...runtime.ServeMuxOption,
) *runtime.ServeMux {
	t.Helper()

	ctx := context.Background()
	mux := runtime.NewServeMux(opts...)
	if catalogConn != nil {
		client := catalogv1.NewCatalogServiceClient(catalogConn)
		if err := catalogv1.RegisterCatalogServiceHandlerClient(ctx, mux, client); err != nil {
			t.Fatalf("register catalog routes: %v", err)
		}
	}
	if ordersConn != nil {
		client := ordersv1.NewOrderServiceClient(ordersConn)
		if err := ordersv1.RegisterOrderServiceHandlerClient(ctx, mux, client); err != nil {
			t.Fatalf("register orders routes: %v", err)
		}
	}

	return mux
}
