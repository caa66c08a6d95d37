package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// FailureMode is what the Redis limiter answers while Redis cannot be
// reached.
type FailureMode string

// The failure modes.
const (
	// FailLocal decides with an in-process Local limiter. Each replica then
	// enforces the full limit on its own, so the combined limit is as many
	// times higher as there are replicas until Redis returns.
	FailLocal FailureMode = "local"
	// FailOpen allows every request.
	FailOpen FailureMode = "open"
	// FailClosed refuses every request, asking clients to retry after the
	// probe interval.
	FailClosed FailureMode = "closed"
)

// Validate reports whether m is one of the failure modes.
func (m FailureMode) Validate() error {
	switch m {
	case FailLocal, FailOpen, FailClosed:
		return nil
	}

	return fmt.Errorf("failure mode %q: want %q, %q or %q", string(m), FailLocal, FailOpen,
		FailClosed)
}

// gcraScript is gcra() in Lua, run atomically by Redis: one round trip reads
// the bucket's theoretical arrival time, decides, and writes it back with a
// lifetime that ends when the bucket would be full again. Times are whole
// microseconds, which a Lua number (a double) holds exactly.
//
// KEYS[1] bucket key; ARGV[1] refill interval; ARGV[2] burst; ARGV[3] the
// caller's time, or 0 to use the server's clock. Returns {allowed (0/1),
// remaining, reset after, retry after}.
var gcraScript = redis.NewScript(`
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local tolerance = interval * burst
local base = tonumber(redis.call('GET', KEYS[1]) or '0')
if base < now then
  base = now
end

local ahead = base + interval - now
if ahead > tolerance then
  return {0, 0, base - now, ahead - tolerance}
end

local ttl_ms = math.floor((ahead + 999) / 1000)
redis.call('SET', KEYS[1], string.format('%d', base + interval), 'PX', ttl_ms)
return {1, math.floor((tolerance - ahead) / interval), ahead, 0}
`)

// Redis is a Limiter whose buckets live in Redis, so every replica that
// points at the same Redis enforces one combined limit. Each decision is
// one EVALSHA of a GCRA script (EVAL when the script is not cached yet);
// each key expires once its bucket has refilled.
//
// When a round trip fails or times out, Redis is marked unreachable (logged
// once), that request and the following ones are answered by the failure
// mode, and after each probe interval one request tries Redis again; the
// first success marks it reachable (logged once). Redis is safe for
// concurrent use.
//
// Limitation: the probe is a real request, so while Redis is down one
// request per probe interval waits up to the round-trip timeout.
//
// Limitation: under FailLocal the fallback's buckets start full and each
// replica enforces the whole limit by itself, so while Redis is down a
// client spread over N replicas gets up to N bursts and N times the rate.
// What was counted locally is not written back to Redis on recovery.
//
// Limitation: Redis's own memory is not bounded by this package; each key
// lives only until its bucket is full again, but give Redis a maxmemory
// with the volatile-ttl policy so that a flood of keys cannot exhaust it.
type Redis struct {
	client     redis.Scripter
	prefix     string
	mode       FailureMode
	probeEvery time.Duration
	timeout    time.Duration
	clock      func() time.Time
	clientTime bool
	fallback   *Local
	logger     *zap.Logger
	closeFn    func() error

	// down is set while Redis is considered unreachable.
	down atomic.Bool
	// probing is set while one request is trying an unreachable Redis.
	probing atomic.Bool
	// nextProbe is the clock's Unix time in nanoseconds after which the
	// next probe may start.
	nextProbe atomic.Int64
}

var _ Backend = (*Redis)(nil)

// NewRedis builds a Redis limiter on client, which the caller keeps owning
// and closing. It reads WithPrefix, WithFailureMode, WithProbeInterval,
// WithTimeout, WithClock and WithLogger, and WithMaxKeys and WithShards for
// the Local used by FailLocal.
//
// Configure the client so that a dead Redis fails fast: MaxRetries -1,
// ContextTimeoutEnabled and DialerRetries 1, as RedisClientOptions does; otherwise a
// failing round trip can outlast WithTimeout.
func NewRedis(client redis.Scripter, opts ...Option) (*Redis, error) {
	if client == nil {
		return nil, fmt.Errorf("ratelimit: new redis limiter: %w: nil client", ErrInvalidOption)
	}

	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: new redis limiter: %w", err)
	}

	r := &Redis{
		client:     client,
		prefix:     o.prefix,
		mode:       o.failureMode,
		probeEvery: o.probeInterval,
		timeout:    o.timeout,
		clock:      o.clock,
		clientTime: o.clientTime,
		logger:     o.logger,
	}
	if o.failureMode == FailLocal {
		r.fallback = newLocal(o)
	}

	return r, nil
}

// Allow implements Limiter. It returns an error for an invalid rule, or
// when ctx ends before Redis answers; Redis being unreachable is not an
// error but is answered by the failure mode.
func (r *Redis) Allow(ctx context.Context, key string, rule Rule) (Decision, error) {
	if err := rule.Validate(); err != nil {
		return Decision{}, fmt.Errorf("ratelimit: allow %q: %w", key, err)
	}

	probe := false
	if r.down.Load() {
		if !r.claimProbe() {
			return r.degraded(ctx, key, rule)
		}

		probe = true
		defer r.probing.Store(false)
	}

	d, err := r.eval(ctx, key, rule)
	if err == nil {
		if probe {
			r.markUp()
		}

		return d, nil
	}

	if ctx.Err() != nil {
		if probe {
			r.nextProbe.Store(r.clock().UnixNano())
		}

		return Decision{}, fmt.Errorf("ratelimit: allow %q in redis: %w", key, ctx.Err())
	}

	r.markDown(err)

	return r.degraded(ctx, key, rule)
}

// Reachable reports whether the last round trip to Redis succeeded.
func (r *Redis) Reachable() bool { return !r.down.Load() }

// Close releases the Redis client when the limiter owns it (built by Open);
// otherwise it does nothing.
func (r *Redis) Close() error {
	if r.closeFn == nil {
		return nil
	}

	if err := r.closeFn(); err != nil {
		return fmt.Errorf("ratelimit: close redis client: %w", err)
	}

	return nil
}

func (r *Redis) eval(ctx context.Context, key string, rule Rule) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()

	var now int64
	if r.clientTime {
		now = r.clock().UnixMicro()
	}

	interval := rule.interval().Microseconds()
	res, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key},
		interval, rule.Burst, now).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("run gcra script on %q: %w", r.prefix+key, err)
	}

	if len(res) != 4 {
		return Decision{}, fmt.Errorf("run gcra script on %q: %w: %v", r.prefix+key,
			errBadReply, res)
	}

	return Decision{
		Allowed:    res[0] == 1,
		Limit:      rule.Burst,
		Remaining:  int(res[1]),
		ResetAfter: time.Duration(res[2]) * time.Microsecond,
		RetryAfter: time.Duration(res[3]) * time.Microsecond,
	}, nil
}

var errBadReply = errors.New("unexpected reply")

// claimProbe reports whether this request should try Redis again: the
// probe interval has passed and no other request is probing.
func (r *Redis) claimProbe() bool {
	if r.clock().UnixNano() < r.nextProbe.Load() {
		return false
	}

	return r.probing.CompareAndSwap(false, true)
}

func (r *Redis) markDown(err error) {
	r.nextProbe.Store(r.clock().Add(r.probeEvery).UnixNano())

	if r.down.CompareAndSwap(false, true) {
		r.logger.Warn("redis unreachable; rate limiting falls back until it returns",
			zap.String("failure_mode", string(r.mode)),
			zap.Duration("probe_interval", r.probeEvery), zap.Error(err))
	}
}

func (r *Redis) markUp() {
	if r.down.CompareAndSwap(true, false) {
		r.logger.Info("redis reachable again; rate limits are shared across replicas")
	}
}

// degraded answers while Redis is unreachable.
func (r *Redis) degraded(ctx context.Context, key string, rule Rule) (Decision, error) {
	switch r.mode {
	case FailOpen:
		return Decision{Allowed: true, Limit: rule.Burst, Remaining: rule.Burst - 1}, nil
	case FailClosed:
		return Decision{Limit: rule.Burst, ResetAfter: r.probeEvery, RetryAfter: r.probeEvery}, nil
	default:
		return r.fallback.Allow(ctx, key, rule)
	}
}
