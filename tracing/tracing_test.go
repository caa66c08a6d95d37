package tracing_test

import (
	"context"
	"encoding/hex"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// testTimeout bounds each request and each export.
const testTimeout = 10 * time.Second

const (
	traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parent  = "00f067aa0ba902b7"
)

// hopHealth is a health service that calls next (when set) and records the
// span context and trace headers each call arrived with.
type hopHealth struct {
	healthpb.UnimplementedHealthServer
	next healthpb.HealthClient

	mu      sync.Mutex
	spans   []trace.SpanContext
	headers []metadata.MD
}

func (h *hopHealth) Check(
	ctx context.Context,
	req *healthpb.HealthCheckRequest,
) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h.mu.Lock()
	h.spans = append(h.spans, trace.SpanContextFromContext(ctx))
	h.headers = append(h.headers, md)
	h.mu.Unlock()

	if h.next != nil {
		return h.next.Check(ctx, req)
	}

	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *hopHealth) last() (trace.SpanContext, metadata.MD) {
	h.mu.Lock()
	defer h.mu.Unlock()

	return h.spans[len(h.spans)-1], h.headers[len(h.headers)-1]
}

// chain is HTTP -> gRPC hop 1 -> gRPC hop 2, traced with tr.
type chain struct {
	url        string
	hop1, hop2 *hopHealth
	// edge is the span context the HTTP handler saw.
	edge func() trace.SpanContext
}

func newChain(t *testing.T, tr *tracing.Tracing) *chain {
	t.Helper()

	server := func(h *hopHealth) string {
		srv := grpc.NewServer(grpc.StatsHandler(tr.ServerHandler()))
		healthpb.RegisterHealthServer(srv, h)
		return testsupport.ServeGRPC(t, srv)
	}
	dial := func(addr string) healthpb.HealthClient {
		return healthpb.NewHealthClient(
			testsupport.DialGRPC(t, addr, grpc.WithStatsHandler(tr.ClientHandler())))
	}

	c := &chain{hop2: &hopHealth{}}
	c.hop1 = &hopHealth{next: dial(server(c.hop2))}
	first := dial(server(c.hop1))

	var (
		mu   sync.Mutex
		edge trace.SpanContext
	)
	c.edge = func() trace.SpanContext {
		mu.Lock()
		defer mu.Unlock()
		return edge
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		edge = trace.SpanContextFromContext(r.Context())
		mu.Unlock()

		httpcall.SetRoute(r.Context(), "/v1/things/{id}")
		if _, err := first.Check(r.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	})
	srv := httptest.NewServer(tr.Middleware(handler))
	t.Cleanup(srv.Close)
	c.url = srv.URL

	return c
}

func (c *chain) get(t *testing.T, header http.Header) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/things/1", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get: status %d", resp.StatusCode)
	}
}

// TestPropagationWithExportOff checks that with export off a trace id still
// exists at the edge and reaches every gRPC hop, with the caller's sampling
// decision and baggage carried along.
func TestPropagationWithExportOff(t *testing.T) {
	tr, err := tracing.New(tracing.Config{ServiceName: "test"})
	if err != nil {
		t.Fatalf("tracing: %v", err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	c := newChain(t, tr)

	tests := []struct {
		name        string
		traceparent string
		wantTrace   string
		wantSampled bool
	}{
		{"sampled caller", "00-" + traceID + "-" + parent + "-01", traceID, true},
		{"unsampled caller", "00-" + traceID + "-" + parent + "-00", traceID, false},
		{"no caller context", "", "", false},
		{"malformed traceparent", "00-zz-" + parent + "-01", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := http.Header{"Baggage": {"tenant=acme"}}
			if tt.traceparent != "" {
				header.Set("Traceparent", tt.traceparent)
			}
			c.get(t, header)

			edge := c.edge()
			want := tt.wantTrace
			if want == "" {
				want = edge.TraceID().String()
				if !edge.TraceID().IsValid() || want == traceID {
					t.Fatalf("edge trace id %s, want a fresh valid one", want)
				}
			}

			one, md1 := c.hop1.last()
			two, md2 := c.hop2.last()
			for i, sc := range []trace.SpanContext{edge, one, two} {
				if got := sc.TraceID().String(); got != want {
					t.Errorf("hop %d trace id = %s, want %s", i, got, want)
				}
				if sc.IsSampled() != tt.wantSampled {
					t.Errorf("hop %d sampled = %v, want %v", i, sc.IsSampled(), tt.wantSampled)
				}
			}
			if edge.SpanID() == one.SpanID() || one.SpanID() == two.SpanID() {
				t.Errorf("hops share span ids: %s %s %s", edge.SpanID(), one.SpanID(),
					two.SpanID())
			}
			for i, md := range []metadata.MD{md1, md2} {
				if tp := strings.Join(md.Get("traceparent"), ","); !strings.Contains(tp, want) {
					t.Errorf("hop %d traceparent = %q, want trace %s", i+1, tp, want)
				}
				if b := strings.Join(md.Get("baggage"), ","); b != "tenant=acme" {
					t.Errorf("hop %d baggage = %q, want tenant=acme", i+1, b)
				}
			}
		})
	}
}

// collector is an in-process OTLP trace collector.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer

	mu  sync.Mutex
	req []*coltracepb.ExportTraceServiceRequest
}

func (c *collector) Export(
	_ context.Context,
	req *coltracepb.ExportTraceServiceRequest,
) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	c.req = append(c.req, req)
	c.mu.Unlock()

	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// spans returns "service: name" of every span received for traceID.
func (c *collector) spans(traceID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()

	var out []string
	for _, req := range c.req {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if hex.EncodeToString(s.GetTraceId()) == traceID {
						out = append(out, service+": "+s.GetName())
					}
				}
			}
		}
	}

	return out
}

// TestExportToOTLP sends a traced request through the chain with export on
// to an OTLP collector served in process, and checks what arrives after
// Shutdown flushed it.
func TestExportToOTLP(t *testing.T) {
	col := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, col)
	addr := testsupport.ServeGRPC(t, srv)

	tr, err := tracing.New(tracing.Config{
		ServiceName: "gateway-test", Instance: "gw-1", Endpoint: addr, Insecure: true,
	})
	if err != nil {
		t.Fatalf("tracing: %v", err)
	}
	c := newChain(t, tr)

	c.get(t, http.Header{"Traceparent": {"00-" + traceID + "-" + parent + "-01"}})
	// A new trace with no caller context is sampled too at ratio 1.
	c.get(t, nil)
	fresh := c.edge().TraceID().String()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	for _, id := range []string{traceID, fresh} {
		got := col.spans(id)
		want := []string{
			"gateway-test: GET /v1/things/{id}",
			"gateway-test: grpc.health.v1.Health/Check",
		}
		for _, w := range want {
			if n := count(got, w); n == 0 {
				t.Errorf("trace %s: no span %q in %v", id, w, got)
			}
		}
		// Edge span, two client spans and two server spans.
		if len(got) != 5 {
			t.Errorf("trace %s: %d spans %v, want 5", id, len(got), got)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}

	return n
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     tracing.Config
		wantErr bool
	}{
		{"export off", tracing.Config{ServiceName: "gateway"}, false},
		{"export on", tracing.Config{ServiceName: "gateway", Endpoint: "127.0.0.1:4317",
			SampleRatio: 0.5}, false},
		{"no service name", tracing.Config{}, true},
		{"endpoint without port", tracing.Config{ServiceName: "g", Endpoint: "collector"},
			true},
		{"ratio above one", tracing.Config{ServiceName: "g", SampleRatio: 1.5}, true},
		{"negative ratio", tracing.Config{ServiceName: "g", SampleRatio: -0.1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if _, err := tracing.New(tt.cfg); (err != nil) != tt.wantErr {
				t.Errorf("New() = %v, want error %v", err, tt.wantErr)
			}
		})
	}

	t.Run("flags", func(t *testing.T) {
		var cfg tracing.Config
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		err := fs.Parse([]string{"-otlp-endpoint=127.0.0.1:4317", "-otlp-insecure",
			"-trace-sample-ratio=0.25"})
		if err != nil {
			t.Fatalf("parse: %v", err)
		}

		want := tracing.Config{Endpoint: "127.0.0.1:4317", Insecure: true, SampleRatio: 0.25}
		if cfg != want {
			t.Errorf("config = %+v, want %+v", cfg, want)
		}
	})
}
