package discovery

import (
	"encoding/json"
	"strings"
	"testing"

	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestRetryingServiceConfig(t *testing.T) {
	cfg, err := RetryingServiceConfig(DefaultRetryPolicy,
		"gatehouse.catalog.v1.CatalogService", "gatehouse.orders.v1.OrderService")
	if err != nil {
		t.Fatal(err)
	}

	var parsed serviceConfig
	if err := json.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	if len(parsed.MethodConfig) != 1 {
		t.Fatalf("method configs = %d, want 1: %s", len(parsed.MethodConfig), cfg)
	}

	var got []string
	for _, n := range parsed.MethodConfig[0].Name {
		got = append(got, n.Service+"/"+n.Method)
	}
	want := []string{
		"gatehouse.catalog.v1.CatalogService/GetProduct",
		"gatehouse.catalog.v1.CatalogService/ListProducts",
		"gatehouse.catalog.v1.CatalogService/ReserveStock",
		"gatehouse.orders.v1.OrderService/GetOrder",
		"gatehouse.orders.v1.OrderService/ListOrders",
		"gatehouse.orders.v1.OrderService/WatchOrder",
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("retried methods %v, want %v (CreateOrder must never be retried)", got, want)
	}

	// grpc-go must accept it as a service config.
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1",
		grpc.WithDefaultServiceConfig(cfg),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc refuses the config: %v", err)
	}
	_ = conn.Close()
}

func TestRetryingServiceConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		service string
	}{
		{"unknown service", "gatehouse.nothing.v1.Nope"},
		{"message, not a service", "gatehouse.catalog.v1.Product"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RetryingServiceConfig(DefaultRetryPolicy, tc.service); err == nil {
				t.Fatalf("no error for %s", tc.service)
			}
		})
	}
}
