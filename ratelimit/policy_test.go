package ratelimit_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

func rule(burst int) ratelimit.Rule { return ratelimit.Rule{Rate: 1, Burst: burst} }

func rulePtr(burst int) *ratelimit.Rule {
	r := rule(burst)
	return &r
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  ratelimit.Policy
		wantErr string // "" for valid
	}{
		{
			name:   "default only",
			policy: ratelimit.Policy{Default: rule(5)},
		},
		{
			name: "everything",
			policy: ratelimit.Policy{
				Default: rule(5),
				Methods: map[string]ratelimit.Rule{
					"/gatehouse.orders.v1.OrderService/CreateOrder": rule(1),
					"/gatehouse.catalog.v1.CatalogService/*":        rule(9),
				},
				Routes: map[string]ratelimit.Rule{
					"POST /v1/orders":       rule(1),
					"GET /v1/products/{id}": rule(9),
				},
				Classes: map[string]ratelimit.ClassPolicy{
					"gold": {Default: rulePtr(50), Routes: map[string]ratelimit.Rule{
						"POST /v1/orders": rule(10),
					}},
				},
			},
		},
		{
			name:    "missing default",
			policy:  ratelimit.Policy{},
			wantErr: "default: invalid rate limit rule: rate 0",
		},
		{
			name: "method without service",
			policy: ratelimit.Policy{Default: rule(1), Methods: map[string]ratelimit.Rule{
				"CreateOrder": rule(1),
			}},
			wantErr: `methods["CreateOrder"]: want a gRPC full method`,
		},
		{
			name: "route that is not a pattern",
			policy: ratelimit.Policy{Default: rule(1), Routes: map[string]ratelimit.Rule{
				"GET /v1/{bad": rule(1),
			}},
			wantErr: `routes["GET /v1/{bad"]: not a usable ServeMux pattern`,
		},
		{
			name: "conflicting routes",
			policy: ratelimit.Policy{Default: rule(1), Routes: map[string]ratelimit.Rule{
				"GET /v1/{a}/x": rule(1),
				"GET /v1/y/{b}": rule(1),
			}},
			wantErr: "conflicts with",
		},
		{
			name: "bad rule inside a class",
			policy: ratelimit.Policy{Default: rule(1), Classes: map[string]ratelimit.ClassPolicy{
				"gold": {Methods: map[string]ratelimit.Rule{"/a.B/C": {Rate: 1}}},
			}},
			wantErr: `classes["gold"].methods["/a.B/C"]: invalid rate limit rule: burst 0`,
		},
		{
			name: "class without a name",
			policy: ratelimit.Policy{Default: rule(1), Classes: map[string]ratelimit.ClassPolicy{
				"": {Default: rulePtr(2)},
			}},
			wantErr: `classes[""]: a class needs a name`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}

				return
			}

			if !errors.Is(err, ratelimit.ErrInvalidPolicy) {
				t.Fatalf("Validate: got %v, want ErrInvalidPolicy", err)
			}

			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate: got %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// precedencePolicy gives every rule a distinct burst, so Decision.Limit
// tells which one applied.
var precedencePolicy = ratelimit.Policy{
	Default: rule(1),
	Methods: map[string]ratelimit.Rule{
		"/shop.Orders/Create": rule(2),
		"/shop.Catalog/*":     rule(3),
	},
	Routes: map[string]ratelimit.Rule{
		"POST /v1/orders":    rule(2),
		"GET /v1/products/":  rule(3),
		"GET /v1/products/x": rule(4),
	},
	Classes: map[string]ratelimit.ClassPolicy{
		"gold": {
			Default: rulePtr(10),
			Methods: map[string]ratelimit.Rule{"/shop.Orders/Create": rule(20)},
			Routes:  map[string]ratelimit.Rule{"POST /v1/orders": rule(20)},
		},
		"silver": {Methods: map[string]ratelimit.Rule{"/shop.Orders/Watch": rule(30)}},
	},
}

func TestPolicyPrecedenceForMethods(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		class     string
		wantLimit int
		wantScope string
	}{
		{name: "default", method: "/shop.Orders/Get", wantLimit: 1, wantScope: "*"},
		{name: "method", method: "/shop.Orders/Create", wantLimit: 2,
			wantScope: "/shop.Orders/Create"},
		{name: "service wildcard", method: "/shop.Catalog/List", wantLimit: 3,
			wantScope: "/shop.Catalog/*"},
		{name: "class default beats default", method: "/shop.Orders/Get", class: "gold",
			wantLimit: 10, wantScope: "*"},
		{name: "class method beats method", method: "/shop.Orders/Create", class: "gold",
			wantLimit: 20, wantScope: "/shop.Orders/Create"},
		{name: "method beats class default", method: "/shop.Catalog/List", class: "gold",
			wantLimit: 3, wantScope: "/shop.Catalog/*"},
		{name: "class without default keeps default", method: "/shop.Orders/Get",
			class: "silver", wantLimit: 1, wantScope: "*"},
		{name: "class method not shared with others", method: "/shop.Orders/Watch",
			wantLimit: 1, wantScope: "*"},
		{name: "unknown class", method: "/shop.Orders/Create", class: "bronze", wantLimit: 2,
			wantScope: "/shop.Orders/Create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuard(t, "grpc", precedencePolicy)
			v, err := g.CheckMethod(context.Background(), tt.method, "id", tt.class)
			if err != nil {
				t.Fatalf("CheckMethod: %v", err)
			}

			if v.Limit != tt.wantLimit || v.Scope != tt.wantScope {
				t.Errorf("got limit %d scope %q, want %d %q", v.Limit, v.Scope, tt.wantLimit,
					tt.wantScope)
			}
		})
	}
}

func TestPolicyPrecedenceForRoutes(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string
		rpc       string
		class     string
		wantLimit int
		wantScope string
	}{
		{name: "default", method: "GET", path: "/v1/orders/o-1", wantLimit: 1, wantScope: "*"},
		{name: "method rule through the resolved RPC", method: "PUT", path: "/v1/orders/o-1",
			rpc: "/shop.Orders/Create", wantLimit: 2, wantScope: "/shop.Orders/Create"},
		{name: "route beats method", method: "GET", path: "/v1/products/x",
			rpc: "/shop.Orders/Create", wantLimit: 4, wantScope: "GET /v1/products/x"},
		{name: "class method beats route", method: "POST", path: "/v1/orders/", class: "gold",
			rpc: "/shop.Orders/Create", wantLimit: 20, wantScope: "/shop.Orders/Create"},
		{name: "service wildcard through the resolved RPC", method: "GET", path: "/v1/cat",
			rpc: "/shop.Catalog/List", wantLimit: 3, wantScope: "/shop.Catalog/*"},
		{name: "route", method: "POST", path: "/v1/orders", wantLimit: 2,
			wantScope: "POST /v1/orders"},
		{name: "other method on the route", method: "GET", path: "/v1/orders", wantLimit: 1,
			wantScope: "*"},
		{name: "subtree pattern", method: "GET", path: "/v1/products/p-1", wantLimit: 3,
			wantScope: "GET /v1/products/"},
		{name: "most specific pattern", method: "GET", path: "/v1/products/x", wantLimit: 4,
			wantScope: "GET /v1/products/x"},
		{name: "class route", method: "POST", path: "/v1/orders", class: "gold", wantLimit: 20,
			wantScope: "POST /v1/orders"},
		{name: "route beats class default", method: "GET", path: "/v1/products/x",
			class: "gold", wantLimit: 4, wantScope: "GET /v1/products/x"},
		{name: "class default", method: "GET", path: "/v1/orders/o-1", class: "gold",
			wantLimit: 10, wantScope: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuard(t, "principal", precedencePolicy)
			r := httptest.NewRequest(tt.method, "http://127.0.0.1"+tt.path, nil)
			v, err := g.CheckRequest(r, tt.rpc, "id", tt.class)
			if err != nil {
				t.Fatalf("CheckRequest: %v", err)
			}

			if v.Limit != tt.wantLimit || v.Scope != tt.wantScope {
				t.Errorf("got limit %d scope %q, want %d %q", v.Limit, v.Scope, tt.wantLimit,
					tt.wantScope)
			}
		})
	}
}

func newGuard(
	t *testing.T,
	name string,
	p ratelimit.Policy,
	opts ...ratelimit.Option,
) *ratelimit.Guard {
	t.Helper()

	l, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	g, err := ratelimit.NewGuard(name, l, p, opts...)
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}

	return g
}
