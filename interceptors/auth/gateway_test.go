package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// patternRoutes maps "<HTTP method> <grpc-gateway pattern>" to the gRPC
// method, as a gateway would build it from the google.api.http options.
var patternRoutes = map[string]string{
	"POST /v1/orders":             "/gatehouse.orders.v1.OrderService/CreateOrder",
	"GET /v1/orders/{id=*}":       "/gatehouse.orders.v1.OrderService/GetOrder",
	"GET /v1/orders/{id=*}:watch": "/gatehouse.orders.v1.OrderService/WatchOrder",
}

// resolvePattern uses the route grpc-gateway matched; it is only known
// inside a runtime.Middleware.
func resolvePattern(r *http.Request) (string, bool) {
	pattern, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return "", false
	}
	m, ok := patternRoutes[r.Method+" "+pattern.String()]

	return m, ok
}

// asRuntimeMiddleware runs an http.Handler middleware as a grpc-gateway
// middleware, after route matching.
func asRuntimeMiddleware(mw func(http.Handler) http.Handler) runtime.Middleware {
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next(w, r, params)
			})).ServeHTTP(w, r)
		}
	}
}

// TestThroughGateway runs the whole path: real HTTP client, the middleware
// inside a real grpc-gateway mux, a real gRPC connection, and the server
// interceptors checking the forwarded token again.
func TestThroughGateway(t *testing.T) {
	f := newFixture(t)
	var backendCalls atomic.Int64
	conn := serveGRPCCounting(t, f.guard, &backendCalls)

	mux := runtime.NewServeMux(
		runtime.WithMiddlewares(asRuntimeMiddleware(f.guard.HTTPMiddleware(resolvePattern))),
		// A gateway forwarding X-Gatehouse-* as metadata, so only the
		// middleware's stripping keeps client copies away from the backend.
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			if strings.HasPrefix(strings.ToLower(key), "x-gatehouse-") {
				return key, true
			}
			return runtime.DefaultHeaderMatcher(key)
		}),
	)
	err := ordersv1.RegisterOrderServiceHandlerClient(context.Background(), mux,
		ordersv1.NewOrderServiceClient(conn))
	if err != nil {
		t.Fatalf("register orders routes: %v", err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	writer := f.clientToken(t, "writer", "writer-secret")
	reader := f.clientToken(t, "reader", "reader-secret")
	body := `{"customerId":"c","lineItems":[{"productId":"p-1","quantity":1}]}`

	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		wantStatus int
		wantCalls  int64
		wantWho    string
	}{
		{"create without token", "POST", "/v1/orders", "", 401, 0, ""},
		{"create as reader", "POST", "/v1/orders", reader, 403, 0, ""},
		{"create as writer", "POST", "/v1/orders", writer, 200, 1, "writer"},
		{"watch as reader", "GET", "/v1/orders/o-1:watch", reader, 200, 0, "reader"},
		{"watch without token", "GET", "/v1/orders/o-1:watch", "", 401, 0, ""},
		{"get as reader reaches the stub (501)", "GET", "/v1/orders/o-1", reader, 501, 1, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := backendCalls.Load()

			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(body))
			if err != nil {
				t.Fatalf("build request: %v", err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Gatehouse-Principal", "admin")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}

			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			defer func() { _ = resp.Body.Close() }()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := backendCalls.Load() - before; got != tt.wantCalls {
				t.Errorf("unary backend calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantWho == "" {
				return
			}

			// Unary answers are one JSON object; streams one per line with a
			// "result" wrapper.
			var out struct {
				Order struct {
					CustomerID string `json:"customerId"`
				} `json:"order"`
				Result struct {
					Order struct {
						CustomerID string `json:"customerId"`
					} `json:"order"`
				} `json:"result"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatalf("decode answer: %v", err)
			}
			who := out.Order.CustomerID + out.Result.Order.CustomerID
			if who != tt.wantWho {
				t.Errorf("backend saw principal %q, want %q", who, tt.wantWho)
			}
		})
	}
}
