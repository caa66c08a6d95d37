// Package ratelimit decides whether a request may proceed under a token
// bucket: a Rule gives a refill rate per second and a burst, and a Limiter
// answers one request at a time with a Decision that says how much is left
// and how long to wait.
//
// Two Limiters share the same arithmetic (GCRA, which stores one
// timestamp per bucket and behaves exactly like a token bucket): Local keeps
// buckets in process memory under a ceiling on tracked keys, and Redis keeps
// them in Redis so that several gateway replicas enforce one combined limit,
// falling back to a Local while Redis cannot be reached.
//
// A Policy declares which Rule applies to which route, RPC and principal
// class; a Guard applies one Policy with one Limiter and is what the gRPC
// interceptors (interceptors/ratelimit) and the HTTP middleware
// (ratelimit/httplimit) call.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Bounds on a Rule. They keep every quantity representable in whole
// microseconds, the unit shared with the Redis script.
const (
	// MaxRate is the highest accepted refill rate, in requests per second.
	MaxRate = 1_000_000
	// MaxBurst is the largest accepted burst.
	MaxBurst = 1_000_000
	// MaxFillTime is the longest accepted time to refill an empty bucket
	// (Burst / Rate).
	MaxFillTime = 30 * 24 * time.Hour
)

// ErrInvalidRule is returned (wrapped) for a Rule outside the bounds above.
var ErrInvalidRule = errors.New("invalid rate limit rule")

// Rule is a token bucket: Rate tokens are added per second, up to Burst,
// and each request takes one. A full bucket lets Burst requests through at
// once; after that, one request per 1/Rate seconds.
type Rule struct {
	// Rate is the refill rate in requests per second; fractions are allowed
	// (0.5 is one request every two seconds).
	Rate float64 `json:"rate"`
	// Burst is the bucket size: how many requests may arrive at once.
	Burst int `json:"burst"`
}

// Validate reports whether r is within MaxRate, MaxBurst and MaxFillTime.
func (r Rule) Validate() error {
	switch {
	case math.IsNaN(r.Rate) || r.Rate <= 0 || r.Rate > MaxRate:
		return fmt.Errorf("%w: rate %v must be above 0 and at most %d per second",
			ErrInvalidRule, r.Rate, MaxRate)
	case r.Burst < 1 || r.Burst > MaxBurst:
		return fmt.Errorf("%w: burst %d must be between 1 and %d", ErrInvalidRule, r.Burst, MaxBurst)
	case float64(r.Burst)/r.Rate > MaxFillTime.Seconds():
		return fmt.Errorf("%w: burst %d at rate %v takes longer than %v to refill",
			ErrInvalidRule, r.Burst, r.Rate, MaxFillTime)
	}

	return nil
}

// interval is the time one token takes to refill, rounded to whole
// microseconds so that Local and the Redis script compute the same answers.
//
// Limitation: a rate whose interval is not a whole number of microseconds
// is rounded to the nearest one (3 per second runs at 3.000003 per second).
func (r Rule) interval() time.Duration {
	return time.Duration(math.Round(1e6/r.Rate)) * time.Microsecond
}

// Decision is a Limiter's answer to one request.
type Decision struct {
	// Allowed reports whether the request may proceed; an allowed request
	// has taken a token.
	Allowed bool
	// Limit is the bucket size (the rule's Burst).
	Limit int
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// RetryAfter is how long until one request would be allowed; zero when
	// Allowed.
	RetryAfter time.Duration
}

// Limiter decides requests against token buckets named by key. The same key
// with the same Rule always draws from the same bucket; implementations are
// safe for concurrent use.
type Limiter interface {
	// Allow takes one token from key's bucket under rule, or refuses. It
	// returns an error only for an invalid rule or when no decision could
	// be made (see each implementation).
	Allow(ctx context.Context, key string, rule Rule) (Decision, error)
}

// Backend is a Limiter that holds resources. The caller that built it must
// call Close once it is no longer used.
type Backend interface {
	Limiter
	// Close releases the backend's resources.
	Close() error
}

// gcra takes one request at now from a bucket whose theoretical arrival
// time is tat (zero or in the past for a full bucket). It returns the
// bucket's new theoretical arrival time, which equals tat when refused.
// All times are in one unit (nanoseconds here); the Redis script mirrors
// this function in microseconds.
func gcra(tat, now int64, interval, burst int64) (int64, Decision) {
	tolerance := interval * burst
	base := max(tat, now)
	next := base + interval
	ahead := next - now

	if ahead > tolerance {
		return tat, Decision{
			Limit:      int(burst),
			ResetAfter: time.Duration(base - now),
			RetryAfter: time.Duration(ahead - tolerance),
		}
	}

	return next, Decision{
		Allowed:    true,
		Limit:      int(burst),
		Remaining:  int((tolerance - ahead) / interval),
		ResetAfter: time.Duration(ahead),
	}
}
