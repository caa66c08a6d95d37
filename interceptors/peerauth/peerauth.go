// Package peerauth authorizes the calling service of every gRPC call from
// the identity in its verified TLS client certificate.
//
// For each call the server interceptors take the peer's certificate from the
// connection (verified during the mutual TLS handshake, see package mtls),
// read its identity, spiffe://<trust-domain>/svc/<name>, put it in the
// context (see Caller), and ask the policy whether <name> may call the
// method:
//
//   - no TLS, no certificate, a certificate that was not verified, no valid
//     identity in it, or an identity of another trust domain:
//     codes.Unauthenticated, always, whatever the dry-run setting;
//   - a verified identity the policy does not allow: codes.PermissionDenied,
//     or in dry-run mode a log line saying it would have been denied.
//
// Every refusal is logged at warn level with the caller, the method and the
// reason; the caller gets a short message that says nothing more.
//
// Limitation: the certificate is verified once, at the handshake. A
// connection opened before its client certificate expired, or before its CA
// was removed from the bundle, keeps its identity until it closes; that is
// what lets rotation leave open connections alone.
package peerauth

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/identity"
)

// Messages the caller sees; the details go to the server's log only.
const (
	msgUnauthenticated  = "caller identity not verified"
	msgPermissionDenied = "caller not allowed to call this method"
)

var (
	// ErrNoTLS marks a connection that is not TLS.
	ErrNoTLS = errors.New("connection is not tls")

	// ErrNotVerified marks a TLS connection whose client certificate is
	// absent or was not verified against a trusted CA.
	ErrNotVerified = errors.New("no verified client certificate")

	// ErrTrustDomain marks an identity of another trust domain.
	ErrTrustDomain = errors.New("identity of another trust domain")
)

// Policy decides whether the service named caller may call fullMethod
// ("/package.Service/Method"): nil allows, an error denies and says why.
// *policy.Policy implements it.
type Policy interface {
	Check(fullMethod, caller string) error
}

// Option configures an Authorizer.
type Option func(*options)

type options struct {
	logger      *zap.Logger
	trustDomain string
	dryRun      bool
	onRefusal   func(context.Context, Refusal)
}

// Refusal is a call the interceptors refused, as passed to the hook set by
// WithRefusalHook.
type Refusal struct {
	// Method is the full gRPC method that was called.
	Method string
	// Caller is the identity read from the peer's verified certificate;
	// zero when there is none.
	Caller identity.ID
	// PeerAddr is the network address of the peer, "" when unknown.
	PeerAddr string
	// Code is what the caller got: Unauthenticated or PermissionDenied.
	Code codes.Code
	// Err says why, in detail; it wraps ErrNoTLS, ErrNotVerified,
	// ErrTrustDomain, an identity error or the policy's error.
	Err error
}

// WithLogger sets the logger for refusals; the default is zap.NewNop().
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// WithTrustDomain sets the only trust domain callers may come from; the
// default is identity.DefaultTrustDomain.
func WithTrustDomain(td string) Option {
	return func(o *options) { o.trustDomain = td }
}

// WithDryRun makes policy denials log "would deny" and let the call
// through. It never relaxes authentication: a caller without a verified
// identity is refused regardless.
func WithDryRun(dryRun bool) Option {
	return func(o *options) { o.dryRun = dryRun }
}

// WithRefusalHook sets fn to be called for every refused call, after it is
// logged, for example to record a security event. Dry-run denials are not
// refusals. fn runs on the call's path: it must be quick and safe for
// concurrent use.
func WithRefusalHook(fn func(context.Context, Refusal)) Option {
	return func(o *options) { o.onRefusal = fn }
}

// Authorizer holds the policy and settings of the interceptors. It is safe
// for concurrent use.
type Authorizer struct {
	policy      Policy
	logger      *zap.Logger
	trustDomain string
	dryRun      bool
	onRefusal   func(context.Context, Refusal)
}

// New returns an Authorizer enforcing policy.
func New(policy Policy, opts ...Option) (*Authorizer, error) {
	if policy == nil {
		return nil, errors.New("peerauth: policy must not be nil")
	}

	o := options{logger: zap.NewNop(), trustDomain: identity.DefaultTrustDomain}
	for _, opt := range opts {
		opt(&o)
	}

	if o.logger == nil {
		return nil, errors.New("peerauth: logger must not be nil")
	}

	if err := identity.ValidateTrustDomain(o.trustDomain); err != nil {
		return nil, fmt.Errorf("peerauth: %w", err)
	}

	return &Authorizer{
		policy:      policy,
		logger:      o.logger.Named("peerauth"),
		trustDomain: o.trustDomain,
		dryRun:      o.dryRun,
		onRefusal:   o.onRefusal,
	}, nil
}

type callerKey struct{}

// Caller returns the verified identity of the calling service, put in the
// context by the interceptors, and whether there is one.
func Caller(ctx context.Context) (identity.ID, bool) {
	id, ok := ctx.Value(callerKey{}).(identity.ID)
	return id, ok
}

// PeerIdentity reads the identity of the peer of ctx from its verified TLS
// certificate, checking that it belongs to trustDomain. The error wraps
// ErrNoTLS, ErrNotVerified, ErrTrustDomain or an identity error.
func PeerIdentity(ctx context.Context, trustDomain string) (identity.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return identity.ID{}, ErrNoTLS
	}

	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return identity.ID{}, fmt.Errorf("%w: auth type %q", ErrNoTLS, p.AuthInfo.AuthType())
	}

	// VerifiedChains is empty unless the handshake verified the client's
	// chain; PeerCertificates alone proves nothing.
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return identity.ID{}, ErrNotVerified
	}

	id, err := identity.FromCertificate(info.State.VerifiedChains[0][0])
	if err != nil {
		return identity.ID{}, fmt.Errorf("verified certificate: %w", err)
	}

	if id.TrustDomain() != trustDomain {
		return id, fmt.Errorf("%w: %s, want trust domain %q", ErrTrustDomain, id, trustDomain)
	}

	return id, nil
}

// authorize returns ctx with the caller's identity, or the status error to
// give the caller.
func (a *Authorizer) authorize(ctx context.Context, method string) (context.Context, error) {
	id, err := PeerIdentity(ctx, a.trustDomain)
	if err != nil {
		a.logger.Warn("call refused: unauthenticated", zap.String("method", method),
			zap.Stringer("caller", id), zap.String("peer_addr", peerAddr(ctx)),
			zap.String("reason", err.Error()))
		a.refused(ctx, Refusal{Method: method, Caller: id, Code: codes.Unauthenticated, Err: err})

		return ctx, status.Error(codes.Unauthenticated, msgUnauthenticated)
	}

	ctx = context.WithValue(ctx, callerKey{}, id)

	err = a.policy.Check(method, id.Service())
	if err == nil {
		if ce := a.logger.Check(zap.DebugLevel, "call allowed"); ce != nil {
			ce.Write(zap.String("method", method), zap.Stringer("caller", id))
		}

		return ctx, nil
	}

	if a.dryRun {
		a.logger.Warn("dry run: call would be denied", zap.String("method", method),
			zap.Stringer("caller", id), zap.String("peer_addr", peerAddr(ctx)),
			zap.String("reason", err.Error()))

		return ctx, nil
	}

	a.logger.Warn("call refused: permission denied", zap.String("method", method),
		zap.Stringer("caller", id), zap.String("peer_addr", peerAddr(ctx)),
		zap.String("reason", err.Error()))
	a.refused(ctx, Refusal{Method: method, Caller: id, Code: codes.PermissionDenied, Err: err})

	return ctx, status.Error(codes.PermissionDenied, msgPermissionDenied)
}

// refused passes r, completed with the peer's address, to the hook if any.
func (a *Authorizer) refused(ctx context.Context, r Refusal) {
	if a.onRefusal == nil {
		return
	}

	r.PeerAddr = peerAddr(ctx)
	a.onRefusal(ctx, r)
}

// UnaryServerInterceptor authorizes each unary call before its handler.
func (a *Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}

		return handler(ctx, req)
	}
}

// StreamServerInterceptor authorizes each stream before its handler; the
// handler's stream context carries the caller's identity.
func (a *Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(
		srv any,
		ss grpc.ServerStream,
		info *grpc.StreamServerInfo,
		handler grpc.StreamHandler,
	) error {
		ctx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}

		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// identityStream is a server stream whose context carries the caller.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller's identity.
func (s *identityStream) Context() context.Context { return s.ctx }

func peerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}

	return p.Addr.String()
}
