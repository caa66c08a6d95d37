package accesslog_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/requestid"
)

// TestHopsShareIDs sends an order through gateway -> orders -> catalog and
// checks that the access line at every hop carries the same request id and
// trace id, and its own span id.
func TestHopsShareIDs(t *testing.T) {
	s := newStack(t)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name        string
		traceparent string
		// wantTrace is the trace id every hop must log; empty means any id,
		// as long as all hops agree.
		wantTrace string
		spoofID   bool
	}{
		{
			name:        "sampled traceparent",
			traceparent: "00-" + traceID + "-00f067aa0ba902b7-01",
			wantTrace:   traceID,
		},
		{
			name:        "unsampled traceparent",
			traceparent: "00-" + traceID + "-00f067aa0ba902b7-00",
			wantTrace:   traceID,
		},
		{name: "no traceparent"},
		{name: "spoofed backend request id", spoofID: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "hop-" + strings.ReplaceAll(tt.name, " ", "-")
			body := `{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":1}]}`
			req, err := http.NewRequest(http.MethodPost, s.url+"/v1/orders",
				strings.NewReader(body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(requestid.Header, id)
			if tt.traceparent != "" {
				req.Header.Set("traceparent", tt.traceparent)
			}
			if tt.spoofID {
				req.Header.Set("Grpc-Metadata-X-Request-Id", "spoofed")
			}

			resp, err := s.do(t, req)
			if err != nil {
				t.Fatalf("create order: %v", err)
			}
			if resp.status != http.StatusOK {
				t.Fatalf("create order: status %d: %s", resp.status, resp.body)
			}

			hops := []map[string]any{
				s.line(t, "gateway.access", "http request", id),
				s.line(t, "orders.access", "grpc request", id),
				s.line(t, "catalog.access", "grpc request", id),
			}
			wantMethods := []string{"POST", "/gatehouse.orders.v1.OrderService/CreateOrder",
				"/gatehouse.catalog.v1.CatalogService/ReserveStock"}

			want := tt.wantTrace
			if want == "" {
				want, _ = hops[0]["trace_id"].(string)
			}
			if len(want) != 32 {
				t.Fatalf("gateway trace_id = %q, want 32 hex digits", want)
			}

			spans := map[any]bool{}
			for i, hop := range hops {
				if hop["trace_id"] != want {
					t.Errorf("hop %d (%s) trace_id = %v, want %s", i, hop["logger"],
						hop["trace_id"], want)
				}
				method := hop["grpc_method"]
				if i == 0 {
					method = hop["http_method"]
				}
				if method != wantMethods[i] {
					t.Errorf("hop %d method = %v, want %s", i, method, wantMethods[i])
				}
				spans[hop["span_id"]] = true
			}
			if len(spans) != len(hops) {
				t.Errorf("span ids %v, want %d distinct ones", spans, len(hops))
			}
		})
	}
}
