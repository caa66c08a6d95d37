package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/tracing"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
)

// discardExporter takes spans and drops them, so export on costs what the
// SDK does and nothing of a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }

func (discardExporter) Shutdown(context.Context) error { return nil }

// benchModes are the tracing set-ups compared: none, export off and export
// on (every trace sampled, spans dropped by the exporter).
func benchModes(b *testing.B) []struct {
	name string
	tr   *tracing.Tracing
} {
	b.Helper()

	on, err := tracing.New(tracing.Config{ServiceName: "bench"},
		tracing.WithExporter(discardExporter{}))
	if err != nil {
		b.Fatalf("tracing: %v", err)
	}
	b.Cleanup(func() { _ = on.Shutdown(context.Background()) })

	return []struct {
		name string
		tr   *tracing.Tracing
	}{{"no tracing", nil}, {"export off", newExportOff(b)}, {"export on", on}}
}

// BenchmarkMiddleware is the cost of Middleware around a handler that only
// writes a status, called directly, with and without a caller's
// traceparent.
func BenchmarkMiddleware(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})

	for _, m := range benchModes(b) {
		h := http.Handler(ok)
		if m.tr != nil {
			h = m.tr.Middleware(ok)
		}

		for _, tp := range []string{"", "00-" + traceID + "-" + parent + "-01"} {
			name := m.name + "/no traceparent"
			if tp != "" {
				name = m.name + "/traceparent"
			}

			b.Run(name, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "/v1/things/1", nil)
				if tp != "" {
					req.Header.Set("Traceparent", tp)
				}

				b.ReportAllocs()
				for b.Loop() {
					h.ServeHTTP(httptest.NewRecorder(), req)
				}
			})
		}
	}
}

// BenchmarkGRPC is the cost of tracing a unary call over loopback, client
// and server together, with the client's context carrying no trace. "with
// access log" adds a stats handler that does nothing to the server, standing
// in for the access log, and wires tracing as services/host does then
// (ServerHandler); otherwise the server uses ServerOptions.
func BenchmarkGRPC(b *testing.B) {
	for _, m := range benchModes(b) {
		for _, access := range []bool{false, true} {
			name := m.name
			if access {
				name += "/with access log"
			}

			b.Run(name, func(b *testing.B) {
				benchCalls(b, m.tr, access)
			})
		}
	}
}

func benchCalls(b *testing.B, tr *tracing.Tracing, access bool) {
	var (
		server []grpc.ServerOption
		dial   []grpc.DialOption
	)
	switch {
	case tr != nil && access:
		server = []grpc.ServerOption{grpc.StatsHandler(tr.ServerHandler())}
	case tr != nil:
		server = tr.ServerOptions()
	}
	if tr != nil {
		dial = tr.DialOptions()
	}
	if access {
		server = append(server, grpc.StatsHandler(nopStats{}))
	}

	srv := grpc.NewServer(server...)
	healthpb.RegisterHealthServer(srv, &hopHealth{})
	client := healthpb.NewHealthClient(
		testsupport.DialGRPC(b, testsupport.ServeGRPC(b, srv), dial...))

	// The connection is made here, outside the measured loop.
	ctx := context.Background()
	req := &healthpb.HealthCheckRequest{}
	if _, err := client.Check(ctx, req); err != nil {
		b.Fatalf("check: %v", err)
	}

	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(ctx, req); err != nil {
			b.Fatalf("check: %v", err)
		}
	}
}

// nopStats is a stats handler that ignores everything.
type nopStats struct{}

func (nopStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (nopStats) HandleRPC(context.Context, stats.RPCStats) {}

func (nopStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (nopStats) HandleConn(context.Context, stats.ConnStats) {}
