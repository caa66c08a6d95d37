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
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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

// Watch records like Check, then sends one status and ends the stream.
func (h *hopHealth) Watch(
	_ *healthpb.HealthCheckRequest,
	stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse],
) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	h.mu.Lock()
	h.spans = append(h.spans, trace.SpanContextFromContext(ctx))
	h.headers = append(h.headers, md)
	h.mu.Unlock()

	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
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

// wiring is a way for a gRPC server to continue the trace.
type wiring struct {
	name   string
	server func(*tracing.Tracing) []grpc.ServerOption
}

// wirings are both: ServerOptions alone, and ServerHandler, as a server
// with an access log uses it.
var wirings = []wiring{
	{"server options", (*tracing.Tracing).ServerOptions},
	{"server handler", func(tr *tracing.Tracing) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.StatsHandler(tr.ServerHandler())}
	}},
}

// serveHealth serves h on 127.0.0.1 with opts, traced with tr and w.
func serveHealth(
	t *testing.T,
	tr *tracing.Tracing,
	w wiring,
	h healthpb.HealthServer,
) string {
	t.Helper()

	srv := grpc.NewServer(w.server(tr)...)
	healthpb.RegisterHealthServer(srv, h)

	return testsupport.ServeGRPC(t, srv)
}

// dialHealth is a health client for addr, traced with tr.
func dialHealth(t *testing.T, tr *tracing.Tracing, addr string) healthpb.HealthClient {
	t.Helper()

	return healthpb.NewHealthClient(testsupport.DialGRPC(t, addr, tr.DialOptions()...))
}

func newChain(t *testing.T, tr *tracing.Tracing, w wiring) *chain {
	t.Helper()

	server := func(h *hopHealth) string { return serveHealth(t, tr, w, h) }
	dial := func(addr string) healthpb.HealthClient { return dialHealth(t, tr, addr) }

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

// newExportOff is a Tracing with export off, shut down when t ends.
func newExportOff(t testing.TB) *tracing.Tracing {
	t.Helper()

	tr, err := tracing.New(tracing.Config{ServiceName: "test"})
	if err != nil {
		t.Fatalf("tracing: %v", err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })

	return tr
}

// TestPropagationWithExportOff checks that with export off a trace id still
// exists at the edge and reaches every gRPC hop, with the caller's sampling
// decision, tracestate and baggage carried along, for both server wirings.
func TestPropagationWithExportOff(t *testing.T) {
	for _, w := range wirings {
		t.Run(w.name, func(t *testing.T) {
			testPropagation(t, newChain(t, newExportOff(t), w))
		})
	}
}

func testPropagation(t *testing.T, c *chain) {

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
			header := http.Header{"Baggage": {"tenant=acme"}, "Tracestate": {"vendor=abc"}}
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
				// A tracestate belongs to the caller's traceparent, and goes
				// with it.
				wantState := ""
				if tt.wantTrace != "" {
					wantState = "vendor=abc"
				}
				if ts := strings.Join(md.Get("tracestate"), ","); ts != wantState {
					t.Errorf("hop %d tracestate = %q, want %q", i+1, ts, wantState)
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
	c := newChain(t, tr, wirings[0])

	c.get(t, http.Header{"Traceparent": {"00-" + traceID + "-" + parent + "-01"}})
	// A new trace with no caller context is sampled too at ratio 1.
	c.get(t, nil)
	fresh := c.edge().TraceID().String()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// A server span ends after its answer is sent, so it may still be open
	// when the client has its answer: flush until both traces are whole
	// (or the deadline passes), then shut down.
	provider, ok := tr.TracerProvider().(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("tracer provider is %T, want the SDK's", tr.TracerProvider())
	}
	for ctx.Err() == nil && (len(col.spans(traceID)) < 5 || len(col.spans(fresh)) < 5) {
		if err := provider.ForceFlush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
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

// edgeSeen is what a handler behind Middleware found in its context.
type edgeSeen struct {
	span      trace.SpanContext
	recording bool
	baggage   string
}

// serveEdge serves Middleware of tr on 127.0.0.1 around a handler that
// records what it sees, and returns the URL and the last record.
func serveEdge(t *testing.T, tr *tracing.Tracing) (string, func() edgeSeen) {
	t.Helper()

	var (
		mu   sync.Mutex
		seen edgeSeen
	)
	handler := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		mu.Lock()
		seen = edgeSeen{
			span:      trace.SpanContextFromContext(ctx),
			recording: trace.SpanFromContext(ctx).IsRecording(),
			baggage:   baggage.FromContext(ctx).String(),
		}
		mu.Unlock()
	})
	srv := httptest.NewServer(tr.Middleware(handler))
	t.Cleanup(srv.Close)

	return srv.URL, func() edgeSeen {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

// TestMiddlewareExportOff checks the ids the edge gives a request with export
// off, for good and bad traceparents sent over a real connection.
func TestMiddlewareExportOff(t *testing.T) {
	url, last := serveEdge(t, newExportOff(t))
	c := &chain{url: url}

	const zeros32, zeros16 = "00000000000000000000000000000000", "0000000000000000"
	tests := []struct {
		name        string
		traceparent []string
		// keep is whether the caller's trace id is kept.
		keep        bool
		wantSampled bool
		wantState   string
	}{
		{name: "none"},
		{name: "sampled", traceparent: []string{"00-" + traceID + "-" + parent + "-01"},
			keep: true, wantSampled: true, wantState: "vendor=abc"},
		{name: "unsampled", traceparent: []string{"00-" + traceID + "-" + parent + "-00"},
			keep: true, wantState: "vendor=abc"},
		{name: "later version with more fields",
			traceparent: []string{"01-" + traceID + "-" + parent + "-01-more"},
			keep:        true, wantSampled: true, wantState: "vendor=abc"},
		{name: "first of two headers", traceparent: []string{
			"00-" + traceID + "-" + parent + "-01", "00-" + traceID + "-" + parent + "-00"},
			keep: true, wantSampled: true, wantState: "vendor=abc"},
		{name: "version ff", traceparent: []string{"ff-" + traceID + "-" + parent + "-01"}},
		{name: "version not hex", traceparent: []string{"0x-" + traceID + "-" + parent + "-01"}},
		{name: "version 00 too long",
			traceparent: []string{"00-" + traceID + "-" + parent + "-01-more"}},
		{name: "version 00 trailing byte",
			traceparent: []string{"00-" + traceID + "-" + parent + "-011"}},
		{name: "too short", traceparent: []string{"00-" + traceID + "-" + parent + "-1"}},
		{name: "reserved flag", traceparent: []string{"00-" + traceID + "-" + parent + "-09"}},
		{name: "zero trace id", traceparent: []string{"00-" + zeros32 + "-" + parent + "-01"}},
		{name: "zero parent id", traceparent: []string{"00-" + traceID + "-" + zeros16 + "-01"}},
		{name: "upper-case hex",
			traceparent: []string{"00-" + strings.ToUpper(traceID) + "-" + parent + "-01"}},
		{name: "bad hex", traceparent: []string{"00-" + traceID[:31] + "g-" + parent + "-01"}},
		{name: "wrong separators",
			traceparent: []string{"00_" + traceID + "_" + parent + "_01"}},
		{name: "empty fields", traceparent: []string{"00---"}},
		{name: "garbage", traceparent: []string{strings.Repeat("\xff-", 40)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.get(t, http.Header{
				"Traceparent": tt.traceparent,
				"Tracestate":  {"vendor=abc"},
				"Baggage":     {"tenant=acme"},
			})
			got := last()

			if !got.span.IsValid() {
				t.Fatalf("span context %+v is not valid", got.span)
			}
			if kept := got.span.TraceID().String() == traceID; kept != tt.keep {
				t.Errorf("trace id %s, caller's kept = %v, want %v", got.span.TraceID(),
					kept, tt.keep)
			}
			if got.span.SpanID().String() == parent {
				t.Errorf("span id %s is the caller's, want a new one", got.span.SpanID())
			}
			if got.span.IsSampled() != tt.wantSampled {
				t.Errorf("sampled = %v, want %v", got.span.IsSampled(), tt.wantSampled)
			}
			if got.span.IsRemote() || got.recording {
				t.Errorf("remote = %v, recording = %v, want a local non-recording span",
					got.span.IsRemote(), got.recording)
			}
			if ts := got.span.TraceState().String(); ts != tt.wantState {
				t.Errorf("tracestate = %q, want %q", ts, tt.wantState)
			}
			if got.baggage != "tenant=acme" {
				t.Errorf("baggage = %q, want tenant=acme", got.baggage)
			}
		})
	}

	t.Run("new ids differ", func(t *testing.T) {
		c.get(t, nil)
		one := last().span
		c.get(t, nil)
		two := last().span
		if one.TraceID() == two.TraceID() || one.SpanID() == two.SpanID() {
			t.Errorf("two requests got %s/%s and %s/%s, want different ids",
				one.TraceID(), one.SpanID(), two.TraceID(), two.SpanID())
		}
	})
}

// TestGRPCExportOff checks client to server propagation over real gRPC
// calls with export off: a call whose context has no trace starts one, and
// streams carry the trace like unary calls, for both server wirings.
func TestGRPCExportOff(t *testing.T) {
	tr := newExportOff(t)
	caller := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, traceID), SpanID: mustSpanID(t, parent),
		TraceFlags: trace.FlagsSampled,
	})

	for _, w := range wirings {
		t.Run(w.name, func(t *testing.T) {
			h := &hopHealth{}
			client := dialHealth(t, tr, serveHealth(t, tr, w, h))

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("check without a trace: %v", err)
			}
			fresh, md := h.last()
			checkHop(t, "no trace", fresh, md, trace.TraceID{}, false)

			traced := trace.ContextWithSpanContext(ctx, caller)
			stream, err := client.Watch(traced, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("watch: receive: %v", err)
			}
			got, md := h.last()
			checkHop(t, "stream", got, md, caller.TraceID(), true)
			if got.SpanID() == caller.SpanID() {
				t.Errorf("stream: server span id %s is the caller's", got.SpanID())
			}
		})
	}
}

// checkHop checks the span context sc and metadata md a server saw: valid,
// local, with trace id want (any new one if want is zero) and the sampled
// flag, and exactly one traceparent naming the same trace.
func checkHop(
	t *testing.T,
	name string,
	sc trace.SpanContext,
	md metadata.MD,
	want trace.TraceID,
	sampled bool,
) {
	t.Helper()

	if !sc.IsValid() || sc.IsRemote() {
		t.Fatalf("%s: span context %+v, want a valid local one", name, sc)
	}
	if want.IsValid() && sc.TraceID() != want {
		t.Errorf("%s: trace id %s, want %s", name, sc.TraceID(), want)
	}
	if sc.IsSampled() != sampled {
		t.Errorf("%s: sampled = %v, want %v", name, sc.IsSampled(), sampled)
	}

	tp := md.Get("traceparent")
	if len(tp) != 1 || len(tp[0]) != 55 || tp[0][3:35] != sc.TraceID().String() {
		t.Errorf("%s: traceparent %q, want one naming trace %s", name, tp, sc.TraceID())
	}
	if len(tp) == 1 && strings.Contains(tp[0], sc.SpanID().String()) {
		t.Errorf("%s: traceparent %q carries the server's own span id", name, tp[0])
	}
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()

	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatalf("trace id %q: %v", s, err)
	}

	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()

	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatalf("span id %q: %v", s, err)
	}

	return id
}

// FuzzMiddlewareTraceparent sends arbitrary traceparent and tracestate
// values through Middleware with export off, and checks the result against
// OpenTelemetry's own W3C propagator: the handler must always see a valid
// local span context, which keeps the caller's trace id, flags and
// tracestate exactly when the propagator accepts the traceparent (but for
// one leniency of the propagator, see below). The seeds
// run in every `go test`; to search longer:
//
//	go test ./tracing -run '^$' -fuzz '^FuzzMiddlewareTraceparent$' -fuzztime 1m
func FuzzMiddlewareTraceparent(f *testing.F) {
	for _, seed := range []string{
		"", "00-" + traceID + "-" + parent + "-01", "01-" + traceID + "-" + parent + "-03-x",
		"ff-" + traceID + "-" + parent + "-01", "00-" + traceID + "-" + parent,
		"00-" + traceID + "-" + parent + "-01-", "-", strings.Repeat("0", 55),
		"cc-" + traceID + "-" + parent + "-ff", "00-" + traceID + "-" + parent + "-04",
	} {
		f.Add(seed, "vendor=abc")
	}

	tr := newExportOff(f)
	var seen trace.SpanContext
	h := tr.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
	}))

	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header["Traceparent"] = []string{traceparent}
		req.Header["Tracestate"] = []string{tracestate}
		h.ServeHTTP(httptest.NewRecorder(), req)

		if !seen.IsValid() || seen.IsRemote() {
			t.Fatalf("traceparent %q: span context %+v", traceparent, seen)
		}

		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(
			context.Background(), propagation.HeaderCarrier(req.Header)))
		// One known difference: the propagator accepts a version 00
		// traceparent ending in "-", which the specification's fixed length
		// (55) rules out.
		strict := strings.HasPrefix(traceparent, "00") && len(traceparent) > 55
		if !want.IsValid() || strict {
			if len(traceparent) >= 35 && seen.TraceID().String() == traceparent[3:35] {
				t.Fatalf("traceparent %q: kept the trace id of a bad traceparent",
					traceparent)
			}
			if seen.TraceFlags() != 0 || seen.TraceState().Len() != 0 {
				t.Fatalf("traceparent %q: new trace has flags %s, tracestate %q",
					traceparent, seen.TraceFlags(), seen.TraceState())
			}
			return
		}
		if seen.TraceID() != want.TraceID() || seen.TraceFlags() != want.TraceFlags() ||
			seen.TraceState().String() != want.TraceState().String() {
			t.Fatalf("traceparent %q, tracestate %q: got %s %s %q, want %s %s %q",
				traceparent, tracestate, seen.TraceID(), seen.TraceFlags(), seen.TraceState(),
				want.TraceID(), want.TraceFlags(), want.TraceState())
		}
		if seen.SpanID() == want.SpanID() {
			t.Fatalf("traceparent %q: kept the caller's span id", traceparent)
		}
	})
}
