// Package discovery registers gRPC services in Consul and resolves them for
// gRPC clients.
//
// A Registrar puts one service instance into the local Consul agent with a
// gRPC health check (grpc.health.v1, overall server health), keeps it there
// across agent restarts (Maintain), and at shutdown waits until Consul has
// taken it out of rotation (WaitNotPassing) before removing it. The
// resolver built by NewResolverBuilder follows the passing instances of a
// service with Consul blocking queries and hands them to gRPC as "ip:port"
// addresses, riding out Consul outages on the last known instances:
//
//	conn, err := grpc.NewClient(discovery.Target("greeter"),
//		grpc.WithResolvers(discovery.NewResolverBuilder(consulClient)),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		...)
package discovery

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

const (
	// DefaultWaitTime is how long a Consul blocking query waits for a change.
	DefaultWaitTime = 30 * time.Second

	// DefaultBackoffBase is the first retry delay after a failed query.
	DefaultBackoffBase = 100 * time.Millisecond

	// DefaultBackoffMax caps the retry delay after failed queries.
	DefaultBackoffMax = 5 * time.Second

	// DefaultMaxStaleness is how long a resolver serves its last known
	// instances while Consul cannot be trusted before it reports the
	// failure to gRPC; see WithMaxStaleness.
	DefaultMaxStaleness = time.Minute
)

// Option configures a Registrar or a resolver builder. Options that do not
// apply to what is being built are ignored.
type Option func(*options)

type options struct {
	logger       *zap.Logger
	waitTime     time.Duration
	backoffBase  time.Duration
	backoffMax   time.Duration
	maxStaleness time.Duration
	onChange     func(service string, instanceIDs []string)
}

// WithChangeHook sets fn to be called by a resolver every time the set of
// passing instances it gives gRPC changes, with the service name and the
// sorted instance ids, for example to export the number of healthy
// endpoints or record a discovery event. It runs on the resolver's watch
// goroutine: keep it quick.
func WithChangeHook(fn func(service string, instanceIDs []string)) Option {
	return func(o *options) { o.onChange = fn }
}

// WithLogger sets the logger. The default is zap.NewNop(). A nil logger is
// rejected.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		o.logger = logger
	}
}

// WithWaitTime sets how long each Consul blocking query of the resolver waits
// for a change before it returns unchanged. The default is DefaultWaitTime.
func WithWaitTime(d time.Duration) Option {
	return func(o *options) {
		o.waitTime = d
	}
}

// WithBackoff sets the bounds of the exponential, jittered retry delay
// after failed Consul requests: the resolver's queries, and the attempts of
// Registrar.Maintain to register and to watch the registration. The
// defaults are DefaultBackoffBase and DefaultBackoffMax.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(o *options) {
		o.backoffBase = base
		o.backoffMax = maxDelay
	}
}

// WithMaxStaleness sets how long a resolver keeps serving its last known
// instances while Consul cannot be trusted (queries fail, or Consul came
// back with a fresh state that lists no passing instance) before it
// reports the failure to gRPC. The default is DefaultMaxStaleness. See
// NewResolverBuilder for what gRPC does with the report.
func WithMaxStaleness(d time.Duration) Option {
	return func(o *options) {
		o.maxStaleness = d
	}
}

// newOptions applies opts over the defaults and validates the result.
func newOptions(opts []Option) (options, error) {
	o := options{
		logger:       zap.NewNop(),
		waitTime:     DefaultWaitTime,
		backoffBase:  DefaultBackoffBase,
		backoffMax:   DefaultBackoffMax,
		maxStaleness: DefaultMaxStaleness,
	}

	for _, opt := range opts {
		opt(&o)
	}

	if o.logger == nil {
		return o, errors.New("logger must not be nil")
	}

	if o.waitTime <= 0 {
		return o, fmt.Errorf("wait time %v must be positive", o.waitTime)
	}

	if o.backoffBase <= 0 || o.backoffMax < o.backoffBase {
		return o, fmt.Errorf("backoff %v..%v must be positive and ordered",
			o.backoffBase, o.backoffMax)
	}

	if o.maxStaleness <= 0 {
		return o, fmt.Errorf("max staleness %v must be positive", o.maxStaleness)
	}

	return o, nil
}
