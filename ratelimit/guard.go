package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Bucket keys are "<stage>|<scope>|<id>". Longer ones are replaced by a
// hash so that a long principal id cannot inflate memory per key.
const (
	maxKeyLen      = 128
	maxGuardName   = 32
	dryRunLogEvery = time.Second
)

// Guard applies one Policy with one Limiter for one enforcement stage
// (say, "ip" or "principal"): it picks the rule for a request, names the
// bucket, asks the Limiter, counts the outcome and, in dry-run, logs what
// it would have refused. Guard is safe for concurrent use.
type Guard struct {
	name    string
	limiter Limiter
	policy  *compiledPolicy
	logger  *zap.Logger
	clock   func() time.Time

	allowed     atomic.Uint64
	refused     atomic.Uint64
	wouldRefuse atomic.Uint64
	failed      atomic.Uint64

	// nextDryRunLog is the clock's Unix time in nanoseconds before which
	// dry-run refusals are counted but not logged.
	nextDryRunLog atomic.Int64
	// unloggedDryRun counts dry-run refusals since the last one logged.
	unloggedDryRun atomic.Uint64
}

// Verdict is a Guard's answer to one request.
type Verdict struct {
	Decision
	// DryRun is set when the policy is in dry-run: a refusal was counted
	// and logged but must not be enforced.
	DryRun bool
	// Scope is the method or route whose rule applied, or "*" for the
	// shared default.
	Scope string
}

// Refused reports whether the request must be refused.
func (v Verdict) Refused() bool { return !v.Allowed && !v.DryRun }

// Stats counts a Guard's outcomes since it was built.
type Stats struct {
	// Allowed counts requests let through with a token.
	Allowed uint64
	// Refused counts requests refused.
	Refused uint64
	// WouldRefuse counts requests a dry-run policy let through that it
	// would otherwise have refused.
	WouldRefuse uint64
	// Errors counts requests the Limiter could not decide.
	Errors uint64
}

// NewGuard builds a Guard named name (a short label such as "ip", used in
// bucket keys and logs) that applies policy with limiter. It validates
// policy and reads WithLogger and WithClock.
func NewGuard(name string, limiter Limiter, policy Policy, opts ...Option) (*Guard, error) {
	if name == "" || len(name) > maxGuardName || strings.ContainsAny(name, "| ") {
		return nil, fmt.Errorf("ratelimit: new guard: %w: name %q must be 1 to %d characters "+
			"without '|' or spaces", ErrInvalidOption, name, maxGuardName)
	}

	if limiter == nil {
		return nil, fmt.Errorf("ratelimit: new guard %q: %w: nil limiter", name, ErrInvalidOption)
	}

	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: new guard %q: %w", name, err)
	}

	compiled, err := compilePolicy(&policy)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: new guard %q: %w", name, err)
	}

	return &Guard{
		name:    name,
		limiter: limiter,
		policy:  compiled,
		logger:  o.logger.With(zap.String("stage", name)),
		clock:   o.clock,
	}, nil
}

// Name returns the name the Guard was built with.
func (g *Guard) Name() string { return g.name }

// CheckMethod decides a gRPC call to fullMethod by the caller id, whose
// principal class is class ("" for none).
func (g *Guard) CheckMethod(ctx context.Context, fullMethod, id, class string) (Verdict, error) {
	rule, scope := g.policy.forMethod(fullMethod, class)
	return g.check(ctx, rule, scope, id, class)
}

// CheckRequest decides an HTTP request by the caller id, whose principal
// class is class ("" for none). fullMethod is the gRPC method the request
// is translated to, so that Policy.Methods apply too; "" if unknown.
func (g *Guard) CheckRequest(r *http.Request, fullMethod, id, class string) (Verdict, error) {
	rule, scope := g.policy.forRequest(r, fullMethod, class)
	return g.check(r.Context(), rule, scope, id, class)
}

// Stats returns the Guard's counters.
func (g *Guard) Stats() Stats {
	return Stats{
		Allowed:     g.allowed.Load(),
		Refused:     g.refused.Load(),
		WouldRefuse: g.wouldRefuse.Load(),
		Errors:      g.failed.Load(),
	}
}

func (g *Guard) check(ctx context.Context, rule Rule, scope, id, class string) (Verdict, error) {
	d, err := g.limiter.Allow(ctx, g.bucketKey(scope, id), rule)
	if err != nil {
		g.failed.Add(1)
		return Verdict{Scope: scope}, fmt.Errorf("ratelimit: %s stage: %w", g.name, err)
	}

	v := Verdict{Decision: d, DryRun: g.policy.policy.DryRun, Scope: scope}
	switch {
	case d.Allowed:
		g.allowed.Add(1)
	case v.DryRun:
		g.wouldRefuse.Add(1)
		g.logDryRun(scope, id, class, d)
	default:
		g.refused.Add(1)
		if ce := g.logger.Check(zapcore.DebugLevel, "request refused by rate limit"); ce != nil {
			ce.Write(zap.String("scope", scope), zap.String("id", id),
				zap.String("class", class), zap.Duration("retry_after", d.RetryAfter))
		}
	}

	return v, nil
}

// logDryRun logs at most one would-be refusal per second, with the number
// of others since the previous line, so a flood cannot flood the log too.
//
// Limitation: the unlogged ones are counted, not named; Stats has totals.
func (g *Guard) logDryRun(scope, id, class string, d Decision) {
	now := g.clock().UnixNano()
	next := g.nextDryRunLog.Load()
	if now < next || !g.nextDryRunLog.CompareAndSwap(next, now+int64(dryRunLogEvery)) {
		g.unloggedDryRun.Add(1)
		return
	}

	if ce := g.logger.Check(zapcore.InfoLevel, "dry run: rate limit would refuse"); ce != nil {
		ce.Write(zap.String("scope", scope), zap.String("id", id), zap.String("class", class),
			zap.Duration("retry_after", d.RetryAfter),
			zap.Uint64("unlogged_since_last", g.unloggedDryRun.Swap(0)))
	}
}

// bucketKey names the bucket of id under scope in this stage.
func (g *Guard) bucketKey(scope, id string) string {
	key := g.name + "|" + scope + "|" + id
	if len(key) <= maxKeyLen {
		return key
	}

	sum := sha256.Sum256([]byte(key))

	return g.name + "|#" + hex.EncodeToString(sum[:16])
}
