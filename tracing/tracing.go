// Package tracing sets up OpenTelemetry tracing for a Gatehouse binary: a
// tracer provider, the W3C TraceContext and Baggage propagators, HTTP
// middleware for the gateway, and options for gRPC servers and clients.
//
// Export is off unless an OTLP/gRPC endpoint is configured. Off still means
// traced: every request gets a trace id (the caller's, from a traceparent
// header, or a new one), which is propagated on every gRPC hop and appears in
// the access logs. No span is made, though: each hop reads the W3C headers,
// makes its own span id and passes the trace on (see Middleware, DialOptions
// and ServerOptions), which costs a fraction of the otelhttp and otelgrpc
// instrumentation used when export is on.
//
// Nothing here sets OpenTelemetry's global provider or propagator; the
// handlers this package returns carry their own.
package tracing

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Config says how a binary traces.
type Config struct {
	// ServiceName is the service.name resource attribute ("gateway").
	ServiceName string
	// Instance is the service.instance.id resource attribute; optional.
	Instance string
	// Endpoint is the host:port of an OTLP/gRPC collector; empty turns
	// export off.
	Endpoint string
	// Insecure sends spans to Endpoint over plaintext gRPC, for a collector
	// on loopback. Otherwise TLS with the system roots is used.
	Insecure bool
	// SampleRatio is the fraction of new traces recorded and exported when
	// export is on; 0 means 1 (all). A caller's sampling decision, carried in
	// its traceparent, is always followed.
	SampleRatio float64
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.ServiceName == "" {
		return errors.New("tracing: service name is empty")
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("tracing: sample ratio %v: want 0 to 1", c.SampleRatio)
	}
	if c.Endpoint != "" {
		if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
			return fmt.Errorf("tracing: OTLP endpoint %q: %w", c.Endpoint, err)
		}
	}

	return nil
}

// RegisterFlags adds -otlp-endpoint, -otlp-insecure and -trace-sample-ratio
// to fs, with the current values of c as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "otlp-endpoint", c.Endpoint,
		"OTLP/gRPC collector host:port for traces; empty turns export off")
	fs.BoolVar(&c.Insecure, "otlp-insecure", c.Insecure,
		"send traces to -otlp-endpoint without TLS (collector on loopback)")
	fs.Float64Var(&c.SampleRatio, "trace-sample-ratio", c.SampleRatio,
		"fraction of new traces exported, 0 to 1 (0 means all)")
}

// Option configures New.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
}

// WithExporter sends spans to exp instead of an OTLP endpoint, turning
// export on. Tests use an in-memory exporter; cfg.Endpoint is then ignored.
func WithExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter = exp }
}

// Tracing holds a binary's tracer provider and propagator. It is safe for
// concurrent use. The binary must call Shutdown before it exits, so spans
// still buffered are sent.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	// export is whether spans are recorded and exported; without it the
	// gRPC and HTTP handlers only propagate the trace.
	export bool
}

// New builds the tracer provider for cfg. With an endpoint it dials the
// collector lazily: New does not wait for, or fail on, an unreachable
// collector; export errors go to OpenTelemetry's error handler (see
// LogErrors).
func New(cfg Config, opts ...Option) (*Tracing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	var o options
	for _, opt := range opts {
		opt(&o)
	}

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.instance.id", cfg.Instance),
	))
	if err != nil {
		return nil, fmt.Errorf("tracing: build resource: %w", err)
	}

	exporter := o.exporter
	if exporter == nil && cfg.Endpoint != "" {
		exporter, err = newOTLPExporter(cfg)
		if err != nil {
			return nil, err
		}
	}

	// Without an exporter nothing new is sampled; the handlers then skip
	// the provider and only propagate, and it serves the binary's own spans
	// (TracerProvider). A caller's decision is followed either way, so a
	// sampled trace stays sampled downstream.
	root := sdktrace.NeverSample()
	providerOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporter != nil {
		ratio := cfg.SampleRatio
		if ratio == 0 {
			ratio = 1
		}
		root = sdktrace.TraceIDRatioBased(ratio)
		providerOpts = append(providerOpts, sdktrace.WithBatcher(exporter))
	}
	providerOpts = append(providerOpts, sdktrace.WithSampler(sdktrace.ParentBased(root)))

	return &Tracing{
		provider: sdktrace.NewTracerProvider(providerOpts...),
		propagator: propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{}),
		export: exporter != nil,
	}, nil
}

func newOTLPExporter(cfg Config) (sdktrace.SpanExporter, error) {
	expOpts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
	if cfg.Insecure {
		expOpts = append(expOpts, otlptracegrpc.WithInsecure())
	}

	// New only builds the client; the connection is made on first export.
	exp, err := otlptracegrpc.New(context.Background(), expOpts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %q: %w", cfg.Endpoint, err)
	}

	return exp, nil
}

// TracerProvider is the provider for spans of the binary's own code.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// Propagator is the W3C TraceContext and Baggage propagator.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// DialOptions returns the options that carry the trace on a gRPC client
// connection. With export on, that is the otelgrpc stats handler, which
// records a client span per call. With export off, it is a unary and a
// stream client interceptor that send the trace of the call's context (a new
// one if it has none) under a new span id, with its tracestate and the
// context's baggage. Unlike a stats handler, interceptors spare grpc-go
// building stats events for every call.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if t.export {
		return []grpc.DialOption{
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(t.grpcOptions()...)),
		}
	}

	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(propagateUnaryClient),
		grpc.WithChainStreamInterceptor(propagateStreamClient),
	}
}

// ServerOptions returns the options that continue the caller's trace in a
// gRPC server: the otelgrpc stats handler with export on, a unary and a
// stream server interceptor with export off. Pass them before any other
// interceptor option, so the hop's span context is in the context every
// interceptor sees. A server with another stats handler that reads the
// trace id, such as the access log, uses ServerHandler instead.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if t.export {
		return []grpc.ServerOption{grpc.StatsHandler(t.ServerHandler())}
	}

	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(propagateUnaryServer),
		grpc.ChainStreamInterceptor(propagateStreamServer),
	}
}

// ServerHandler returns a stats handler that continues the caller's trace in
// a gRPC server: otelgrpc's with export on, one that only sets the hop's span
// context in TagRPC with export off. Register it with grpc.StatsHandler
// before a stats handler that reads the trace id, such as the access log:
// interceptors run too late for those. Alone, prefer ServerOptions, since
// any stats handler makes grpc-go build stats events for every call.
func (t *Tracing) ServerHandler() stats.Handler {
	if t.export {
		return otelgrpc.NewServerHandler(t.grpcOptions()...)
	}

	return propagateHandler{}
}

func (t *Tracing) grpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
	}
}

// Middleware returns the HTTP middleware of the gateway: it accepts the
// caller's traceparent, tracestate and baggage, and puts this hop's span
// context in the request context. Put it outermost. With export on it
// starts a server span per request (otelhttp) and, once the handler
// returns, renames it "METHOD route" after the route template recorded
// through package httpcall; with export off it only propagates, as
// described in the package documentation.
//
// Limitation: the edge trusts a caller's traceparent, so a client can choose
// its trace id and ask for sampling; limit that with SampleRatio and the
// collector's own sampling if the edge is exposed to untrusted clients.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	if !t.export {
		return propagateMiddleware(next)
	}

	named := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call, w, r, _ := httpcall.Start(w, r)

		next.ServeHTTP(w, r)

		span := trace.SpanFromContext(r.Context())
		if span.IsRecording() {
			route := call.Route()
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
	})

	return otelhttp.NewHandler(named, "http",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(noopmetric.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method
		}),
	)
}

// Shutdown flushes buffered spans and stops the provider; ctx bounds the
// wait. Spans started afterwards are dropped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}

	return nil
}

// LogErrors returns an OpenTelemetry error handler that logs to logger
// (named "otel") at warn level. Export failures surface only through this
// handler, which is process-global: a binary installs it once, in main, with
// otel.SetErrorHandler.
func LogErrors(logger *zap.Logger) otel.ErrorHandler {
	logger = logger.Named("otel")

	return otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", zap.Error(err))
	})
}
