// Package httplimit is the HTTP side of rate limiting at the edge: a Stage
// wraps an http.Handler and takes one token per request before passing it
// on. The gateway places two: a per-IP stage before authentication, so a
// flood of bad tokens is refused before any signature is checked, and a
// per-principal stage after it, so a client cannot escape its quota by
// spreading over many addresses.
//
// Every limited response, allowed or refused, carries RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset (seconds). A refused request
// gets 429 with Retry-After and the gateway's JSON error body: a
// google.rpc.Status with code RESOURCE_EXHAUSTED and a google.rpc.RetryInfo
// detail. Dry-run stages add no headers and refuse nothing.
package httplimit

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Response header names.
const (
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
)

// MethodResolver returns the gRPC full method ("/pkg.Service/Method") that
// r is translated to, so that a Policy's per-method rules apply at the
// edge too. The same resolver the authentication middleware uses fits.
type MethodResolver func(r *http.Request) (fullMethod string, ok bool)

// PrincipalFunc names the authenticated caller of r: key identifies its
// bucket (the subject or OAuth client id) and class its principal class
// ("" for none). ok false means r has no principal (an anonymous route)
// and is not limited by the stage.
type PrincipalFunc func(r *http.Request) (key, class string, ok bool)

// Stage limits requests with one Policy. It is safe for concurrent use.
type Stage struct {
	guard     *ratelimit.Guard
	caller    PrincipalFunc
	methods   MethodResolver
	logger    *zap.Logger
	name      string
	onRefusal func(r *http.Request, stage, key string)
}

// Option configures a Stage.
type Option func(*options)

type options struct {
	name      string
	logger    *zap.Logger
	ipv6Bits  int
	methods   MethodResolver
	onRefusal func(r *http.Request, stage, key string)
}

// WithRefusalHook sets fn to be called for every request the stage refuses
// (not for dry-run refusals), with the stage name and the bucket key, for
// example to record a security event. It runs on the request's path: keep
// it quick and safe for concurrent use.
func WithRefusalHook(fn func(r *http.Request, stage, key string)) Option {
	return func(o *options) { o.onRefusal = fn }
}

// WithName sets the stage name used in bucket keys and logs ("ip" and
// "principal" by default). Stages sharing one Limiter need distinct names.
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithLogger sets the logger; refusals are logged at debug level, limiter
// failures at warn level.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// WithMethodResolver lets the stage apply Policy.Methods as well as
// Policy.Routes, by asking resolve which RPC a request calls. Without it
// only routes and defaults apply.
func WithMethodResolver(resolve MethodResolver) Option {
	return func(o *options) { o.methods = resolve }
}

// WithIPv6Prefix sets how many leading bits of an IPv6 client address
// name its bucket in the per-IP stage (64 by default, as one subscriber
// usually holds a whole /64; 128 keys each address on its own).
func WithIPv6Prefix(bits int) Option {
	return func(o *options) { o.ipv6Bits = bits }
}

// NewIPStage builds the per-IP stage: requests are keyed by the client
// address ips finds, with no class. It validates policy.
func NewIPStage(
	limiter ratelimit.Limiter,
	policy ratelimit.Policy,
	ips *clientip.Resolver,
	opts ...Option,
) (*Stage, error) {
	if ips == nil {
		return nil, fmt.Errorf("httplimit: ip stage: %w: nil client IP resolver",
			ratelimit.ErrInvalidOption)
	}

	o := buildOptions("ip", opts)
	if o.ipv6Bits < 1 || o.ipv6Bits > 128 {
		return nil, fmt.Errorf("httplimit: ip stage: %w: IPv6 prefix /%d", ratelimit.ErrInvalidOption,
			o.ipv6Bits)
	}

	caller := func(r *http.Request) (string, string, bool) {
		addr, ok := ips.ClientIP(r)
		if !ok {
			// Not an IP peer (a Unix socket): all such callers share a bucket.
			return r.RemoteAddr, "", true
		}

		if addr.Is6() {
			return netip.PrefixFrom(addr, o.ipv6Bits).Masked().String(), "", true
		}

		return addr.String(), "", true
	}

	return newStage(limiter, policy, caller, o)
}

// NewPrincipalStage builds the per-principal stage: requests are keyed by
// principal, which must read what the authentication middleware placed
// before it established. It validates policy.
func NewPrincipalStage(
	limiter ratelimit.Limiter,
	policy ratelimit.Policy,
	principal PrincipalFunc,
	opts ...Option,
) (*Stage, error) {
	if principal == nil {
		return nil, fmt.Errorf("httplimit: principal stage: %w: nil principal function",
			ratelimit.ErrInvalidOption)
	}

	return newStage(limiter, policy, principal, buildOptions("principal", opts))
}

func buildOptions(name string, opts []Option) options {
	o := options{name: name, logger: zap.NewNop(), ipv6Bits: 64}
	for _, opt := range opts {
		opt(&o)
	}

	return o
}

func newStage(
	limiter ratelimit.Limiter,
	policy ratelimit.Policy,
	caller PrincipalFunc,
	o options,
) (*Stage, error) {
	if o.logger == nil {
		return nil, fmt.Errorf("httplimit: %s stage: %w: nil logger", o.name,
			ratelimit.ErrInvalidOption)
	}

	guard, err := ratelimit.NewGuard(o.name, limiter, policy, ratelimit.WithLogger(o.logger))
	if err != nil {
		return nil, fmt.Errorf("httplimit: %w", err)
	}

	// Without per-method rules the method would be looked up for nothing;
	// in front of the gateway that look-up walks the route table.
	methods := o.methods
	if len(policy.Methods) == 0 {
		methods = nil
	}

	return &Stage{
		guard:     guard,
		caller:    caller,
		methods:   methods,
		logger:    o.logger.Named("ratelimit").With(zap.String("stage", o.name)),
		name:      o.name,
		onRefusal: o.onRefusal,
	}, nil
}

// Stats returns the stage's counters.
func (s *Stage) Stats() ratelimit.Stats { return s.guard.Stats() }

// Wrap returns a handler that takes a token for each request and passes
// the request to next, or answers 429 itself.
func (s *Stage) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, class, ok := s.caller(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}

		var method string
		if s.methods != nil {
			method, _ = s.methods(r)
		}

		v, err := s.guard.CheckRequest(r, method, key, class)
		if err != nil {
			// A client that has gone away is not worth a warning.
			if r.Context().Err() == nil {
				s.logger.Warn("rate limit check failed", zap.String("method", r.Method),
					zap.String("path", r.URL.Path), zap.Error(err))
			}

			writeStatus(w, http.StatusServiceUnavailable,
				status.New(codes.Unavailable, "rate limit check failed"))

			return
		}

		if !v.DryRun {
			setLimitHeaders(w.Header(), v.Decision)
		}

		if v.Refused() {
			if s.onRefusal != nil {
				s.onRefusal(r, s.name, key)
			}
			WriteRefused(w, v.RetryAfter)
			return
		}

		next.ServeHTTP(w, r)
	})
}

// Canonical forms of the header names, so that setting them on every
// response skips canonicalisation.
var (
	canonicalLimit     = http.CanonicalHeaderKey(HeaderLimit)
	canonicalRemaining = http.CanonicalHeaderKey(HeaderRemaining)
	canonicalReset     = http.CanonicalHeaderKey(HeaderReset)
)

// setLimitHeaders writes the RateLimit headers of d. When an earlier stage
// has already written them for an allowed request, the more restrictive
// (fewer remaining) stays; a refusal always writes its own.
func setLimitHeaders(h http.Header, d ratelimit.Decision) {
	if prev := h[canonicalRemaining]; d.Allowed && len(prev) == 1 {
		if n, err := strconv.Atoi(prev[0]); err == nil && n <= d.Remaining {
			return
		}
	}

	// One backing array for the three values: one allocation, not three.
	v := [...]string{strconv.Itoa(d.Limit), strconv.Itoa(d.Remaining),
		strconv.FormatInt(ceilSeconds(d.ResetAfter), 10)}
	vals := v[:]
	h[canonicalLimit] = vals[0:1:1]
	h[canonicalRemaining] = vals[1:2:2]
	h[canonicalReset] = vals[2:3:3]
}

// WriteRefused answers 429 with Retry-After and the JSON status body,
// RESOURCE_EXHAUSTED with a RetryInfo detail of retryAfter. The gateway
// can use it wherever it refuses for a limit.
func WriteRefused(w http.ResponseWriter, retryAfter time.Duration) {
	w.Header().Set(HeaderRetryAfter, strconv.FormatInt(max(1, ceilSeconds(retryAfter)), 10))

	st := status.New(codes.ResourceExhausted, "rate limit exceeded")
	if detailed, err := st.WithDetails(&errdetails.RetryInfo{
		// Whole milliseconds, rounded up so a client never retries early.
		RetryDelay: durationpb.New((retryAfter + time.Millisecond - 1).Truncate(time.Millisecond)),
	}); err == nil {
		st = detailed
	}

	writeStatus(w, http.StatusTooManyRequests, st)
}

func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	body, err := protojson.Marshal(st.Proto())
	if err != nil {
		// A Status with a RetryInfo always marshals; keep the answer JSON.
		body = []byte(`{"code":` + strconv.Itoa(int(st.Code())) + `}`)
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
