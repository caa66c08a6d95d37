package accesslog_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/requestid"
)

// TestHTTPLineFields sends requests through the gateway stack and checks
// every field of the gateway's access line.
func TestHTTPLineFields(t *testing.T) {
	s := newStack(t)

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   map[string]any
	}{
		{
			name: "grpc-gateway route", method: http.MethodGet, path: "/v1/products/p-1001",
			want: map[string]any{
				"http_method": "GET", "route": "/v1/products/{id}",
				"path": "/v1/products/p-1001", "status": 200.0, "grpc_code": "OK",
				"grpc_method": "/gatehouse.catalog.v1.CatalogService/GetProduct",
				"bytes_in":    0.0, "upstream": "catalog-1",
			},
		},
		{
			name: "backend error", method: http.MethodGet, path: "/v1/products/p-0000",
			want: map[string]any{
				"route": "/v1/products/{id}", "status": 404.0, "grpc_code": "NotFound",
				"upstream": "catalog-1",
			},
		},
		{
			name: "plain route with body", method: http.MethodPost, path: "/echo",
			body: `{"hello":"world"}`,
			want: map[string]any{
				"http_method": "POST", "route": "POST /echo", "status": 200.0,
				"grpc_code": "OK", "bytes_in": 17.0,
			},
		},
		{
			name: "no route", method: http.MethodGet, path: "/nowhere",
			want: map[string]any{"route": "/", "status": 404.0, "grpc_code": "NotFound"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "http-" + strings.ReplaceAll(tt.name, " ", "-")
			req, err := http.NewRequest(tt.method, s.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set(requestid.Header, id)
			req.Header.Set("User-Agent", "gatehouse-test/1.0")
			req.Header.Set("X-Test-User", "alice")

			resp, err := s.do(t, req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			if got := resp.header.Get(requestid.Header); got != id {
				t.Errorf("response %s = %q, want %q", requestid.Header, got, id)
			}

			line := s.line(t, "gateway.access", "http request", id)
			want := map[string]any{
				"level": "info", "client_ip": "127.0.0.1", "latency_ms": 7.0,
				"bytes_out": float64(len(resp.body)), "principal": "alice",
				"user_agent": "gatehouse-test/1.0",
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %#v, want %#v", k, line[k], v)
				}
			}
			for _, k := range []string{"ts", "trace_id", "span_id"} {
				if s, _ := line[k].(string); s == "" {
					t.Errorf("%s missing from %v", k, line)
				}
			}
		})
	}
}

// TestHTTPRequestID checks which request id a client gets back and the line
// carries: a well-formed one is kept, anything else replaced.
func TestHTTPRequestID(t *testing.T) {
	s := newStack(t)

	tests := []struct {
		name string
		sent string
		keep bool
	}{
		{"accepted", "abc.DEF_123-x", true},
		{"generated when absent", "", false},
		{"rejected when malformed", "two words", false},
		{"rejected when too long", strings.Repeat("z", 65), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.url+"/v1/products/p-1002", nil)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			if tt.sent != "" {
				req.Header.Set(requestid.Header, tt.sent)
			}

			resp, err := s.do(t, req)
			if err != nil {
				t.Fatalf("get: %v", err)
			}

			got := resp.header.Get(requestid.Header)
			if !requestid.Valid(got) {
				t.Fatalf("response id %q is not valid", got)
			}
			if (got == tt.sent) != tt.keep {
				t.Errorf("response id %q for sent %q, want kept=%v", got, tt.sent, tt.keep)
			}

			// The id the client got is the one in the gateway line and the
			// one the catalog logged for the backend call.
			s.line(t, "gateway.access", "http request", got)
			s.line(t, "catalog.access", "grpc request", got)
		})
	}
}

// TestHTTPPanic checks that a panicking handler answers 500 with a JSON
// status when it can, is logged with its stack, and leaves the server up.
func TestHTTPPanic(t *testing.T) {
	s := newStack(t)

	tests := []struct {
		name      string
		path      string
		wantAbort bool
		status    float64
	}{
		{"before the response", "/panic", false, 500},
		{"after the response started", "/panic-late", true, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "panic-" + strings.ReplaceAll(tt.name, " ", "-")
			req, err := http.NewRequest(http.MethodGet, s.url+tt.path, nil)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set(requestid.Header, id)

			resp, err := s.do(t, req)
			switch {
			case tt.wantAbort && err == nil:
				t.Errorf("response read whole (%q), want the connection aborted", resp.body)
			case !tt.wantAbort && err != nil:
				t.Fatalf("get: %v", err)
			case !tt.wantAbort:
				if resp.status != http.StatusInternalServerError {
					t.Errorf("status = %d, want 500", resp.status)
				}
				want := `{"code":13,"message":"internal error","details":[]}`
				if strings.TrimSpace(resp.body) != want {
					t.Errorf("body = %q, want %q", resp.body, want)
				}
			}

			p := s.line(t, "gateway.access", "panic in handler", id)
			if p["level"] != "error" || !strings.Contains(p["panic"].(string), "boom") {
				t.Errorf("panic entry = %v, want level error and the panic value", p)
			}
			if st, _ := p["stack"].(string); !strings.Contains(st, "accesslog_test.newStack") {
				t.Errorf("panic stack does not show the handler:\n%s", st)
			}

			line := s.line(t, "gateway.access", "http request", id)
			if line["status"] != tt.status || line["panic"] != true {
				t.Errorf("access line status=%v panic=%v, want %v and true",
					line["status"], line["panic"], tt.status)
			}
		})
	}

	// The process and server are still up.
	req, err := http.NewRequest(http.MethodGet, s.url+"/v1/products/p-1001", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if resp, err := s.do(t, req); err != nil || resp.status != http.StatusOK {
		t.Fatalf("request after panics: status %d, %v", resp.status, err)
	}
}
