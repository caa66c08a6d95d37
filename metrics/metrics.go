// Package metrics builds the Prometheus metrics of a Gatehouse binary: a
// registry with the Go runtime and process collectors, HTTP request metrics
// for the gateway, gRPC server and client metrics (go-grpc-middleware's
// Prometheus provider), the healthy endpoints discovery sees, the time left
// on our certificates, and an admin listener that serves /metrics.
//
// Nothing here touches the global default registry: each binary makes one
// registry with NewRegistry and hands it to every constructor. Security
// counters (auth failures, rate-limit rejections, peer denials) are
// registered by package securityevent on the same registry.
package metrics

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
)

// ErrNilRegisterer is returned by constructors given a nil registerer.
var ErrNilRegisterer = errors.New("metrics: prometheus registerer is nil")

// Option configures the constructors of this package. Options that do not
// apply to one of them are ignored by it.
type Option func(*options)

type options struct {
	logger  *zap.Logger
	now     func() time.Time
	pprof   bool
	buckets []float64
}

func newOptions(opts []Option) options {
	o := options{logger: zap.NewNop(), now: time.Now, buckets: prometheus.DefBuckets}
	for _, opt := range opts {
		opt(&o)
	}

	return o
}

// WithLogger sets the logger of the admin listener (named "admin").
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		if logger != nil {
			o.logger = logger
		}
	}
}

// WithClock sets the clock used for latencies and certificate expiry.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithPprof serves net/http/pprof under /debug/pprof/ on the admin listener.
// It is off by default: profiles reveal internals and cost CPU while taken.
func WithPprof(on bool) Option {
	return func(o *options) { o.pprof = on }
}

// WithBuckets sets the latency histogram buckets, in seconds, of HTTP and
// gRPC metrics. The default is prometheus.DefBuckets.
func WithBuckets(buckets ...float64) Option {
	return func(o *options) {
		if len(buckets) > 0 {
			o.buckets = buckets
		}
	}
}

// NewRegistry returns a new registry holding the Go runtime and process
// collectors. A binary makes one and passes it everywhere.
func NewRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()

	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register runtime collectors: %w", err)
		}
	}

	return reg, nil
}

// register registers every collector with reg or returns the first error.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return ErrNilRegisterer
	}

	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: register: %w", err)
		}
	}

	return nil
}
