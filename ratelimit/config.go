package ratelimit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrInvalidConfig is returned (wrapped) by Config.Validate.
var ErrInvalidConfig = errors.New("invalid rate limit config")

// Config is the rate-limit section of a binary's configuration, as loaded
// from a JSON file by ParseConfig. The zero value of each optional field
// means its default.
type Config struct {
	// MaxKeys is the ceiling on keys tracked in memory (DefaultMaxKeys when
	// zero), by the local limiter or by the Redis limiter's fallback.
	MaxKeys int `json:"maxKeys,omitempty"`
	// Redis, when set, shares limits across replicas through Redis.
	Redis *RedisConfig `json:"redis,omitempty"`
	// PerIP limits each client IP before authentication; nil turns the
	// stage off. It may not declare classes, as no principal is known yet.
	PerIP *Policy `json:"perIP,omitempty"`
	// PerPrincipal limits each authenticated principal; nil turns the
	// stage off.
	PerPrincipal *Policy `json:"perPrincipal,omitempty"`
}

// RedisConfig says where and how to keep buckets in Redis.
type RedisConfig struct {
	// Addr is Redis's host:port.
	Addr string `json:"addr"`
	// Prefix starts every key (DefaultRedisPrefix when empty).
	Prefix string `json:"prefix,omitempty"`
	// FailureMode is what to answer while Redis is unreachable (FailLocal
	// when empty).
	FailureMode FailureMode `json:"failureMode,omitempty"`
	// ProbeInterval is how often an unreachable Redis is tried again
	// (DefaultProbeInterval when zero).
	ProbeInterval Duration `json:"probeInterval,omitempty"`
	// Timeout bounds each round trip (DefaultRedisTimeout when zero).
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration written in JSON as a string such as "250ms".
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"250ms\": %w", b, err)
	}

	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}

	*d = Duration(v)

	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// DefaultConfig returns the limits used when no configuration is given:
// in memory, 50 requests per second with bursts of 100 per client IP, and
// 10 per second with bursts of 20 per principal.
func DefaultConfig() Config {
	return Config{
		PerIP:        &Policy{Default: Rule{Rate: 50, Burst: 100}},
		PerPrincipal: &Policy{Default: Rule{Rate: 10, Burst: 20}},
	}
}

// ParseConfig decodes a JSON configuration, refusing unknown fields, and
// validates it.
func ParseConfig(data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()

	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("ratelimit: decode config: %w", err)
	}

	if err := c.Validate(); err != nil {
		return Config{}, err
	}

	return c, nil
}

// Validate reports every problem with c, naming each entry.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("maxKeys: %d is negative", c.MaxKeys))
	}

	if c.Redis != nil {
		errs = append(errs, c.Redis.validate()...)
	}

	if c.PerIP != nil {
		if len(c.PerIP.Classes) > 0 {
			errs = append(errs, errors.New("perIP.classes: the per-IP stage runs before "+
				"authentication, so it cannot know a principal's class"))
		}

		if err := c.PerIP.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("perIP: %w", err))
		}
	}

	if c.PerPrincipal != nil {
		if err := c.PerPrincipal.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("perPrincipal: %w", err))
		}
	}

	if len(errs) > 0 {
		return fmt.Errorf("ratelimit: %w:\n%w", ErrInvalidConfig, errors.Join(errs...))
	}

	return nil
}

func (r *RedisConfig) validate() []error {
	var errs []error
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		errs = append(errs, fmt.Errorf("redis.addr %q: want host:port: %w", r.Addr, err))
	}

	if r.FailureMode != "" {
		if err := r.FailureMode.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("redis.failureMode: %w", err))
		}
	}

	if r.ProbeInterval < 0 || r.Timeout < 0 {
		errs = append(errs, errors.New("redis.probeInterval and redis.timeout may not be negative"))
	}

	return errs
}

// Open builds the Limiter c describes: a Redis limiter (owning its client)
// when c.Redis is set, otherwise a Local. opts come after the ones derived
// from c, so they can add a logger or a clock. The caller must Close it.
//
// Limitation: go-redis logs connection failures through its own global
// logger (to stderr); only a binary should redirect it, with
// redis.SetLogger.
func Open(c Config, opts ...Option) (Backend, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}

	var base []Option
	if c.MaxKeys > 0 {
		base = append(base, WithMaxKeys(c.MaxKeys))
	}

	if c.Redis == nil {
		return NewLocal(append(base, opts...)...)
	}

	base = append(base, c.Redis.options()...)
	o, err := buildOptions(append(base, opts...))
	if err != nil {
		return nil, fmt.Errorf("ratelimit: open: %w", err)
	}

	client := redis.NewClient(RedisClientOptions(c.Redis.Addr, o.timeout))
	r, err := NewRedis(client, append(base, opts...)...)
	if err != nil {
		_ = client.Close()
		return nil, err
	}

	r.closeFn = client.Close

	return r, nil
}

func (r *RedisConfig) options() []Option {
	var opts []Option
	if r.Prefix != "" {
		opts = append(opts, WithPrefix(r.Prefix))
	}

	if r.FailureMode != "" {
		opts = append(opts, WithFailureMode(r.FailureMode))
	}

	if r.ProbeInterval > 0 {
		opts = append(opts, WithProbeInterval(time.Duration(r.ProbeInterval)))
	}

	if r.Timeout > 0 {
		opts = append(opts, WithTimeout(time.Duration(r.Timeout)))
	}

	return opts
}

// RedisClientOptions returns go-redis client options suited to a rate
// limiter at addr: no retries and no dial retries (the limiter falls back
// instead), context deadlines honoured, every wait bounded by timeout, and
// no maintenance notifications.
func RedisClientOptions(addr string, timeout time.Duration) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
}
