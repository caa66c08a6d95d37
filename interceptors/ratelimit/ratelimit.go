// Package ratelimit limits gRPC calls on the server side: a unary call
// takes one token, a stream takes one when it opens (its messages are not
// counted). Which bucket a call draws from is up to a KeyFunc: the
// principal authenticated by an earlier interceptor, the peer's IP, or
// anything else.
//
// A refused call gets codes.ResourceExhausted with a google.rpc.RetryInfo
// detail carrying the wait, so clients can back off exactly as long as
// needed. The reason is logged on the server at debug level.
package ratelimit

import (
	"context"
	"fmt"
	"net"
	"time"

	limits "github.com/gatehouse-dev/gatehouse/ratelimit"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// KeyFunc names the caller of a call to fullMethod: key identifies its
// bucket (a subject, a client id, an IP) and class is its principal class
// ("" for none), used to pick class overrides from the Policy. ok false
// means the call is not limited by this interceptor, e.g. an anonymous call
// that a per-IP interceptor earlier in the chain already limits.
type KeyFunc func(ctx context.Context, fullMethod string) (key, class string, ok bool)

// Interceptor limits calls with one Policy. It is safe for concurrent use.
type Interceptor struct {
	guard  *limits.Guard
	key    KeyFunc
	logger *zap.Logger
}

// Option configures an Interceptor.
type Option func(*options)

type options struct {
	name   string
	logger *zap.Logger
}

// WithName sets the stage name used in bucket keys and logs ("grpc" by
// default). Interceptors sharing one Limiter need distinct names, or they
// draw from the same buckets.
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithLogger sets the logger; refusals are logged at debug level, limiter
// failures at warn level.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// New builds an Interceptor that takes tokens from limiter under policy,
// keyed by key. It validates policy.
func New(
	limiter limits.Limiter,
	policy limits.Policy,
	key KeyFunc,
	opts ...Option,
) (*Interceptor, error) {
	o := options{name: "grpc", logger: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}

	if key == nil {
		return nil, fmt.Errorf("ratelimit interceptor: %w: nil key function",
			limits.ErrInvalidOption)
	}

	if o.logger == nil {
		return nil, fmt.Errorf("ratelimit interceptor: %w: nil logger", limits.ErrInvalidOption)
	}

	guard, err := limits.NewGuard(o.name, limiter, policy, limits.WithLogger(o.logger))
	if err != nil {
		return nil, fmt.Errorf("ratelimit interceptor: %w", err)
	}

	return &Interceptor{
		guard:  guard,
		key:    key,
		logger: o.logger.Named("ratelimit").With(zap.String("stage", o.name)),
	}, nil
}

// Stats returns the interceptor's counters.
func (i *Interceptor) Stats() limits.Stats { return i.guard.Stats() }

// UnaryServerInterceptor takes one token per call before the handler runs.
func (i *Interceptor) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		if err := i.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}

		return handler(ctx, req)
	}
}

// StreamServerInterceptor takes one token when a stream opens, before the
// handler runs; messages on an open stream are not counted.
func (i *Interceptor) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(
		srv any,
		ss grpc.ServerStream,
		info *grpc.StreamServerInfo,
		handler grpc.StreamHandler,
	) error {
		if err := i.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}

		return handler(srv, ss)
	}
}

func (i *Interceptor) check(ctx context.Context, method string) error {
	key, class, ok := i.key(ctx, method)
	if !ok {
		return nil
	}

	v, err := i.guard.CheckMethod(ctx, method, key, class)
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}

		i.logger.Warn("rate limit check failed", zap.String("method", method), zap.Error(err))

		return status.Error(codes.Unavailable, "rate limit check failed")
	}

	if !v.Refused() {
		return nil
	}

	return RefusedError(v.RetryAfter)
}

// RefusedError is the error a refused call gets: ResourceExhausted with a
// RetryInfo detail asking the client to wait retryAfter.
func RefusedError(retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, "rate limit exceeded")
	detailed, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		return st.Err()
	}

	return detailed.Err()
}

// PeerIP is a KeyFunc that keys calls by the IP address of the direct TCP
// peer (not its port), with no class. Calls over anything but TCP (a Unix
// socket, an in-memory listener) are not limited.
//
// Limitation: behind the gateway every call comes from the gateway's
// address, so PeerIP is for services reached directly; and each IPv6
// address is keyed on its own, unlike httplimit's per-/64 IP stage.
func PeerIP(ctx context.Context, _ string) (key, class string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return "", "", false
	}

	tcp, isTCP := p.Addr.(*net.TCPAddr)
	if !isTCP {
		return "", "", false
	}

	return tcp.AddrPort().Addr().Unmap().String(), "", true
}
