package accesslog_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// discardLogger encodes JSON lines as production does and throws them away,
// so a benchmark measures building and encoding a line, not disk writes.
func discardLogger() *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey = "ts"
	cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder

	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(io.Discard),
		zapcore.InfoLevel))
}

// sinkWriter is a ResponseWriter that keeps nothing, so the benchmark does
// not measure a recorder.
type sinkWriter struct{ h http.Header }

func (w *sinkWriter) Header() http.Header         { return w.h }
func (w *sinkWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *sinkWriter) WriteHeader(int)             {}

// BenchmarkHTTPMiddleware measures the access log middleware around a
// handler that writes a small JSON body, in process without a network: no
// middleware, the middleware with logging disabled, and JSON to io.Discard.
func BenchmarkHTTPMiddleware(b *testing.B) {
	body := []byte(`{"product":{"id":"p-1001","name":"Espresso beans 1 kg"}}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})

	wrap := func(logger *zap.Logger) http.Handler {
		access, err := accesslog.NewHTTP(logger)
		if err != nil {
			b.Fatalf("access log: %v", err)
		}

		return access.Middleware(handler)
	}

	cases := []struct {
		name string
		h    http.Handler
	}{
		{"bare", handler},
		{"nop-logger", wrap(zap.NewNop())},
		{"json-discard", wrap(discardLogger())},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/v1/products/p-1001", nil)
			req.Header.Set("X-Request-Id", "bench-request-1")
			req.Header.Set("User-Agent", "bench/1.0")
			w := &sinkWriter{h: make(http.Header, 4)}

			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkHTTPStack measures the whole edge middleware stack in the order
// the wiring notes give (tracing with export off, metrics, access log with
// JSON to io.Discard) against the bare handler, in process.
func BenchmarkHTTPStack(b *testing.B) {
	body := []byte(`{"product":{"id":"p-1001","name":"Espresso beans 1 kg"}}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})

	tr, err := tracing.New(tracing.Config{ServiceName: "bench"})
	if err != nil {
		b.Fatalf("tracing: %v", err)
	}
	httpMetrics, err := metrics.NewHTTP(prometheus.NewRegistry())
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	access, err := accesslog.NewHTTP(discardLogger())
	if err != nil {
		b.Fatalf("access log: %v", err)
	}

	cases := []struct {
		name string
		h    http.Handler
	}{
		{"bare", handler},
		{"tracing-metrics-accesslog", tr.Middleware(httpMetrics.Middleware(
			access.Middleware(handler)))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/v1/products/p-1001", nil)
			req.Header.Set("X-Request-Id", "bench-request-1")
			req.Header.Set("Traceparent",
				"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
			w := &sinkWriter{h: make(http.Header, 4)}

			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkGRPCUnary measures a unary health check over a real loopback
// connection with and without the access log stats handler, logging JSON
// to io.Discard.
func BenchmarkGRPCUnary(b *testing.B) {
	access, err := accesslog.NewServer(discardLogger())
	if err != nil {
		b.Fatalf("access log: %v", err)
	}

	cases := []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"no-accesslog", nil},
		{"json-discard", []grpc.ServerOption{
			grpc.StatsHandler(access),
			grpc.ChainUnaryInterceptor(access.UnaryServerInterceptor()),
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			srv := grpc.NewServer(c.opts...)
			healthpb.RegisterHealthServer(srv, health.NewServer())
			client := healthpb.NewHealthClient(
				testsupport.DialGRPC(b, testsupport.ServeGRPC(b, srv)))
			ctx := context.Background()
			req := &healthpb.HealthCheckRequest{}

			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatalf("check: %v", err)
				}
			}
		})
	}
}
