package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

func testRoutes(t *testing.T, cfg Config) *routeTable {
	t.Helper()

	cfg.Catalog, cfg.Orders, cfg.OpenAPI = nil, nil, nil
	routes, err := newRouteTable(cfg.withDefaults(),
		catalogv1.File_gatehouse_catalog_v1_catalog_proto,
		ordersv1.File_gatehouse_orders_v1_orders_proto)
	if err != nil {
		t.Fatalf("newRouteTable: %v", err)
	}

	return routes
}

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name     string
		template string
		segments []segment
		verb     string
		wantErr  bool
	}{
		{name: "literals", template: "/v1/orders",
			segments: []segment{{literal: "v1"}, {literal: "orders"}}},
		{name: "variable", template: "/v1/orders/{id}",
			segments: []segment{{literal: "v1"}, {literal: "orders"}, {variable: "id"}}},
		{name: "variable and verb", template: "/v1/orders/{id}:watch",
			segments: []segment{{literal: "v1"}, {literal: "orders"}, {variable: "id"}},
			verb:     "watch"},
		{name: "no leading slash", template: "v1/orders", wantErr: true},
		{name: "wildcard", template: "/v1/*", wantErr: true},
		{name: "deep wildcard", template: "/v1/{name=**}", wantErr: true},
		{name: "variable with a pattern", template: "/v1/{name=shelves/*}", wantErr: true},
		{name: "empty segment", template: "/v1//orders", wantErr: true},
		{name: "empty variable", template: "/v1/{}", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			segments, verb, err := parseTemplate(tc.template)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseTemplate(%q) = %v, %q; want an error", tc.template, segments, verb)
				}
				return
			}
			if err != nil || !slices.Equal(segments, tc.segments) || verb != tc.verb {
				t.Fatalf("parseTemplate(%q) = %v, %q, %v; want %v, %q",
					tc.template, segments, verb, err, tc.segments, tc.verb)
			}
		})
	}
}

// TestRoutePatternsMatchGrpcGateway checks that each route renders its
// pattern exactly as grpc-gateway does, which is how the mux middleware
// finds a route's limits.
func TestRoutePatternsMatchGrpcGateway(t *testing.T) {
	routes := testRoutes(t, Config{})
	if len(routes.all) != 6 {
		t.Fatalf("%d routes, want the 6 bindings of our protos", len(routes.all))
	}

	for _, r := range routes.all {
		t.Run(r.method+" "+r.template, func(t *testing.T) {
			var seen string
			mux := runtime.NewServeMux()
			err := mux.HandlePath(r.method, r.template,
				func(_ http.ResponseWriter, req *http.Request, _ map[string]string) {
					pat, _ := runtime.HTTPPattern(req.Context())
					seen = pat.String()
				})
			if err != nil {
				t.Fatalf("HandlePath: %v", err)
			}

			path := strings.NewReplacer("{id}", "x1").Replace(r.template)
			mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, path, nil))
			if seen != r.pattern() {
				t.Fatalf("grpc-gateway renders %q, the route table %q", seen, r.pattern())
			}
		})
	}
}

// TestRoutesMatchOpenAPI checks the route table against the published
// OpenAPI document, so neither can drift from the protos unnoticed.
func TestRoutesMatchOpenAPI(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}

	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, r := range testRoutes(t, Config{}).all {
		served = append(served, r.method+" "+r.template)
	}
	slices.Sort(documented)
	slices.Sort(served)

	if !slices.Equal(documented, served) {
		t.Fatalf("OpenAPI documents %v, the gateway serves %v", documented, served)
	}
}

func TestAllowed(t *testing.T) {
	routes := testRoutes(t, Config{})

	tests := []struct {
		path     string
		want     []string
		template string // the label of a 405 on path
	}{
		{"/v1/products", []string{"GET"}, "/v1/products"},
		{"/v1/products/p-1", []string{"GET"}, "/v1/products/{id}"},
		{"/v1/orders", []string{"GET", "POST"}, "/v1/orders"},
		{"/v1/orders/abc", []string{"GET"}, "/v1/orders/{id}"},
		{"/v1/orders/abc:watch", []string{"GET"}, "/v1/orders/{id}:watch"},
		{"/v1/orders/:watch", []string{"GET"}, "/v1/orders/{id}"}, // an id of ":watch"
		{"/v1/nothing", nil, ""},
		{"/v1/products/a/b", nil, ""},
		{"v1/products", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := routes.allowed(tc.path); !slices.Equal(got, tc.want) {
				t.Fatalf("allowed(%q) = %v, want %v", tc.path, got, tc.want)
			}
			if got := routes.template(tc.path); got != tc.template {
				t.Errorf("template(%q) = %q, want %q", tc.path, got, tc.template)
			}
		})
	}
}

// TestMatch checks the look-up by HTTP method and path that serves callers
// in front of the mux: the RPC each would reach, with the verb route
// winning as in the mux.
func TestMatch(t *testing.T) {
	routes := testRoutes(t, Config{})

	tests := []struct {
		method, path string
		want         string // RPC, "" for none
	}{
		{"GET", "/v1/products/p-1", catalogv1.CatalogService_GetProduct_FullMethodName},
		{"GET", "/v1/products", catalogv1.CatalogService_ListProducts_FullMethodName},
		{"POST", "/v1/orders", ordersv1.OrderService_CreateOrder_FullMethodName},
		{"GET", "/v1/orders", ordersv1.OrderService_ListOrders_FullMethodName},
		{"GET", "/v1/orders/abc:watch", ordersv1.OrderService_WatchOrder_FullMethodName},
		{"GET", "/v1/orders/abc", ordersv1.OrderService_GetOrder_FullMethodName},
		{"DELETE", "/v1/products/p-1", ""},
		{"GET", "/v1/products/p-1/x", ""},
		{"GET", "/v1/nothing", ""},
		{"GET", "", ""},
	}
	for _, tc := range tests {
		got := ""
		if r := routes.match(tc.method, tc.path); r != nil {
			got = r.rpc
		}
		if got != tc.want {
			t.Errorf("match(%s %q) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestServes checks the check of configurations keyed by RPC: routed RPCs
// and services are known, others (misspelt, or internal like
// ReserveStock) are not.
func TestServes(t *testing.T) {
	g := &Gateway{routes: testRoutes(t, Config{})}

	tests := []struct {
		method string
		want   bool
	}{
		{catalogv1.CatalogService_GetProduct_FullMethodName, true},
		{ordersv1.OrderService_WatchOrder_FullMethodName, true},
		{"/gatehouse.orders.v1.OrderService/*", true},
		{catalogv1.CatalogService_ReserveStock_FullMethodName, false},
		{"/gatehouse.catalog.v1.CatalogService/Nope", false},
		{"/gatehouse.catalog.v1.Catalog/*", false},
		{"/gatehouse.catalog.v1.CatalogService/GetProduct/*", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := g.Serves(tc.method); got != tc.want {
			t.Errorf("Serves(%q) = %v, want %v", tc.method, got, tc.want)
		}
	}
}

func TestRouteLimits(t *testing.T) {
	routes := testRoutes(t, Config{
		MaxBodyBytes: 1000,
		Routes: map[string]RouteLimits{
			ordersv1.OrderService_CreateOrder_FullMethodName: {MaxBodyBytes: 2000},
			catalogv1.CatalogService_ListProducts_FullMethodName: {
				Timeout: time.Second, MaxTimeout: 2 * time.Second},
		},
	})
	byRPC := map[string]*route{}
	for _, r := range routes.all {
		byRPC[r.rpc] = r
	}

	tests := []struct {
		rpc                 string
		maxBody             int64
		timeout, maxTimeout time.Duration
	}{
		{ordersv1.OrderService_CreateOrder_FullMethodName, 2000, 10 * time.Second,
			30 * time.Second},
		{ordersv1.OrderService_GetOrder_FullMethodName, 0, 10 * time.Second, 30 * time.Second},
		{ordersv1.OrderService_WatchOrder_FullMethodName, 0, 5 * time.Minute, 30 * time.Minute},
		{catalogv1.CatalogService_ListProducts_FullMethodName, 0, time.Second, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.rpc, func(t *testing.T) {
			r := byRPC[tc.rpc]
			if r == nil {
				t.Fatalf("no route for %s", tc.rpc)
			}
			if r.maxBody != tc.maxBody || r.timeout != tc.timeout || r.maxTimeout != tc.maxTimeout {
				t.Fatalf("limits %d %v %v, want %d %v %v", r.maxBody, r.timeout, r.maxTimeout,
					tc.maxBody, tc.timeout, tc.maxTimeout)
			}
		})
	}
}

func TestRouteTableOverrides(t *testing.T) {
	tests := []struct {
		name    string
		routes  map[string]RouteLimits
		wantErr bool
	}{
		{"unknown method", map[string]RouteLimits{"/x.Y/Z": {Timeout: time.Second}}, true},
		{"timeout above its maximum", map[string]RouteLimits{
			catalogv1.CatalogService_GetProduct_FullMethodName: {Timeout: time.Minute}}, true},
		// ReserveStock has no HTTP binding, yet it is a method of the
		// service: limits for it are accepted and unused.
		{"method without a route", map[string]RouteLimits{
			catalogv1.CatalogService_ReserveStock_FullMethodName: {Timeout: time.Second}}, false},
		{"valid override", map[string]RouteLimits{
			catalogv1.CatalogService_GetProduct_FullMethodName: {Timeout: time.Second}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Routes: tc.routes}.withDefaults()
			_, err := newRouteTable(cfg, catalogv1.File_gatehouse_catalog_v1_catalog_proto)
			if (err != nil) != tc.wantErr {
				t.Fatalf("newRouteTable error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
