package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Defaults used when an option is not given.
const (
	// DefaultMaxKeys is the default ceiling on keys a Local tracks.
	DefaultMaxKeys = 100_000
	// DefaultRedisPrefix starts every key the Redis limiter writes.
	DefaultRedisPrefix = "gatehouse:ratelimit:"
	// DefaultProbeInterval is how often an unreachable Redis is tried again.
	DefaultProbeInterval = time.Second
	// DefaultRedisTimeout bounds one Redis round trip.
	DefaultRedisTimeout = 100 * time.Millisecond
	// defaultShards is the number of lock shards of a Local, before it is
	// capped at the key ceiling.
	defaultShards = 64
)

// ErrInvalidOption is returned (wrapped) by constructors given an option
// value they cannot use.
var ErrInvalidOption = errors.New("invalid rate limiter option")

// Option configures NewLocal, NewRedis and NewGuard. Each option says which
// constructors read it; the others ignore it.
type Option func(*options)

type options struct {
	logger        *zap.Logger
	clock         func() time.Time
	clientTime    bool
	maxKeys       int
	shards        int
	prefix        string
	failureMode   FailureMode
	probeInterval time.Duration
	timeout       time.Duration
}

func buildOptions(opts []Option) (options, error) {
	o := options{
		logger:        zap.NewNop(),
		clock:         time.Now,
		maxKeys:       DefaultMaxKeys,
		shards:        defaultShards,
		prefix:        DefaultRedisPrefix,
		failureMode:   FailLocal,
		probeInterval: DefaultProbeInterval,
		timeout:       DefaultRedisTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}

	switch {
	case o.logger == nil:
		return o, fmt.Errorf("%w: nil logger", ErrInvalidOption)
	case o.clock == nil:
		return o, fmt.Errorf("%w: nil clock", ErrInvalidOption)
	case o.maxKeys < 1:
		return o, fmt.Errorf("%w: key ceiling %d is below 1", ErrInvalidOption, o.maxKeys)
	case o.shards < 1:
		return o, fmt.Errorf("%w: shard count %d is below 1", ErrInvalidOption, o.shards)
	case o.probeInterval <= 0:
		return o, fmt.Errorf("%w: probe interval %v is not positive", ErrInvalidOption,
			o.probeInterval)
	case o.timeout <= 0:
		return o, fmt.Errorf("%w: redis timeout %v is not positive", ErrInvalidOption, o.timeout)
	}

	if err := o.failureMode.Validate(); err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}

	return o, nil
}

// WithLogger sets the logger (named "ratelimit" here). Read by every
// constructor; the default discards everything.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		o.logger = logger
		if logger != nil {
			o.logger = logger.Named("ratelimit")
		}
	}
}

// WithClock replaces time.Now, so tests can move time by hand. Read by
// every constructor. For NewRedis it also makes the limiter send its own
// time to Redis instead of using the server's clock, which is what tests
// need and what production must not do (replicas' clocks drift apart).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		o.clock = now
		o.clientTime = true
	}
}

// WithMaxKeys sets the ceiling on keys a Local tracks (DefaultMaxKeys by
// default). Read by NewLocal and by NewRedis for its fallback.
func WithMaxKeys(n int) Option {
	return func(o *options) { o.maxKeys = n }
}

// WithShards sets how many independently locked shards a Local splits its
// keys into; it is rounded down to a power of two and to at most the key
// ceiling. More shards mean less lock contention. Read by NewLocal and
// NewRedis.
func WithShards(n int) Option {
	return func(o *options) { o.shards = n }
}

// WithPrefix sets the prefix of every Redis key (DefaultRedisPrefix by
// default). Read by NewRedis.
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithFailureMode chooses what the Redis limiter answers while Redis cannot
// be reached (FailLocal by default). Read by NewRedis.
func WithFailureMode(mode FailureMode) Option {
	return func(o *options) { o.failureMode = mode }
}

// WithProbeInterval sets how long the Redis limiter waits before trying an
// unreachable Redis again (DefaultProbeInterval by default). Read by
// NewRedis.
func WithProbeInterval(d time.Duration) Option {
	return func(o *options) { o.probeInterval = d }
}

// WithTimeout bounds each Redis round trip (DefaultRedisTimeout by
// default); a slower answer counts as Redis being unreachable. Read by
// NewRedis.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}
