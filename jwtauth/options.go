package jwtauth

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Defaults of the Verifier options.
const (
	DefaultLeeway          = 30 * time.Second
	DefaultMaxTokenSize    = 8 << 10
	DefaultRefreshInterval = 5 * time.Minute
	DefaultRefreshCooldown = 30 * time.Second
	DefaultMaxStaleness    = time.Hour
	DefaultFetchTimeout    = 5 * time.Second
	DefaultCacheSize       = 10000
)

// maxLeeway bounds the clock-skew allowance: more than this would keep
// expired tokens usable for longer than anyone expects.
const maxLeeway = 5 * time.Minute

type options struct {
	logger          *zap.Logger
	httpClient      *http.Client
	now             func() time.Time
	leeway          time.Duration
	maxTokenSize    int
	refreshInterval time.Duration
	refreshCooldown time.Duration
	maxStaleness    time.Duration
	fetchTimeout    time.Duration
	cacheSize       int
}

func defaultOptions() options {
	return options{
		logger:          zap.NewNop(),
		httpClient:      &http.Client{},
		now:             time.Now,
		leeway:          DefaultLeeway,
		maxTokenSize:    DefaultMaxTokenSize,
		refreshInterval: DefaultRefreshInterval,
		refreshCooldown: DefaultRefreshCooldown,
		maxStaleness:    DefaultMaxStaleness,
		fetchTimeout:    DefaultFetchTimeout,
		cacheSize:       DefaultCacheSize,
	}
}

func (o *options) validate() error {
	switch {
	case o.logger == nil:
		return errors.New("logger is nil")
	case o.httpClient == nil:
		return errors.New("HTTP client is nil")
	case o.now == nil:
		return errors.New("clock is nil")
	case o.leeway < 0 || o.leeway > maxLeeway:
		return fmt.Errorf("leeway %v is outside [0, %v]", o.leeway, maxLeeway)
	case o.maxTokenSize <= 0:
		return fmt.Errorf("maximum token size %d is not positive", o.maxTokenSize)
	case o.refreshInterval <= 0:
		return fmt.Errorf("refresh interval %v is not positive", o.refreshInterval)
	case o.refreshCooldown <= 0:
		return fmt.Errorf("refresh cool-down %v is not positive", o.refreshCooldown)
	case o.maxStaleness < o.refreshInterval:
		return fmt.Errorf("maximum staleness %v is shorter than the refresh interval %v",
			o.maxStaleness, o.refreshInterval)
	case o.fetchTimeout <= 0:
		return fmt.Errorf("fetch timeout %v is not positive", o.fetchTimeout)
	case o.cacheSize < 0:
		return fmt.Errorf("cache size %d is negative", o.cacheSize)
	}

	return nil
}

// Option configures a Verifier.
type Option func(*options)

// WithLogger sets the logger for refused tokens (debug) and key refresh
// problems (warn). Tokens never reach it; a short hash prefix does.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		if logger != nil {
			logger = logger.Named("jwtauth")
		}
		o.logger = logger
	}
}

// WithHTTPClient sets the client used for discovery and JWKS requests.
func WithHTTPClient(client *http.Client) Option {
	return func(o *options) { o.httpClient = client }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLeeway sets the clock skew allowed on exp, nbf and iat (at most five
// minutes).
func WithLeeway(d time.Duration) Option {
	return func(o *options) { o.leeway = d }
}

// WithMaxTokenSize sets the longest token, in bytes, that is parsed at all.
func WithMaxTokenSize(n int) Option {
	return func(o *options) { o.maxTokenSize = n }
}

// WithRefreshInterval sets how often every issuer's keys are fetched again.
func WithRefreshInterval(d time.Duration) Option {
	return func(o *options) { o.refreshInterval = d }
}

// WithRefreshCooldown sets the shortest time between two fetches caused by
// tokens with an unknown kid, per issuer.
func WithRefreshCooldown(d time.Duration) Option {
	return func(o *options) { o.refreshCooldown = d }
}

// WithMaxStaleness sets how long keys stay in use after the last successful
// fetch while the key source is failing; after that every token of the
// issuer is refused with ErrKeysUnavailable.
func WithMaxStaleness(d time.Duration) Option {
	return func(o *options) { o.maxStaleness = d }
}

// WithFetchTimeout bounds each discovery or JWKS request.
func WithFetchTimeout(d time.Duration) Option {
	return func(o *options) { o.fetchTimeout = d }
}

// WithCacheSize sets how many verified tokens are remembered; 0 turns the
// cache off.
func WithCacheSize(n int) Option {
	return func(o *options) { o.cacheSize = n }
}
