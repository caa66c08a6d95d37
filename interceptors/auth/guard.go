// Package auth guards RPCs with bearer tokens: it authenticates the caller
// with a jwtauth verifier and authorizes the call with the authz policy of
// the method, as gRPC server interceptors in every service and as an HTTP
// middleware in front of the REST gateway, so a request refused at the edge
// costs no backend hop and a caller inside the network cannot skip the
// check.
//
// Public methods need no token, but a token sent to one is still verified:
// a broken token is refused everywhere, and a valid one puts its Principal
// in the context for the handler.
//
// A refused caller gets a short message: Unauthenticated (HTTP 401, or 400
// for a malformed Authorization header or a token in the query string),
// PermissionDenied (403), or Unavailable (503) while signing keys cannot be
// fetched. The reason is logged in detail on the server.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TokenVerifier checks a bearer token and returns its principal;
// *jwtauth.Verifier is the implementation.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*jwtauth.Principal, error)
}

// DefaultStrippedHeaderPrefixes are removed from every request entering the
// HTTP middleware: a client could otherwise pass headers a backend might
// take for identity set by the gateway.
var DefaultStrippedHeaderPrefixes = []string{"X-Gatehouse-", "Grpc-Metadata-"}

// Guard authenticates and authorizes calls against one policy. It is safe
// for concurrent use and owns no goroutine.
type Guard struct {
	verifier TokenVerifier
	policy   *authz.Policy
	opts     options
}

type options struct {
	logger    *zap.Logger
	realm     string
	strip     []string
	unmatched http.Handler
	onRefusal func(context.Context, Refusal)
}

// Refusal is a call the guard refused, as passed to the hook set by
// WithRefusalHook.
type Refusal struct {
	// Transport is "grpc" or "http".
	Transport string
	// Method is the gRPC full method that was called.
	Method string
	// Principal is the caller of a verified token, nil when no token was
	// verified.
	Principal *jwtauth.Principal
	// Err says why, in detail; it wraps a jwtauth or authz sentinel.
	Err error
}

// Option configures a Guard.
type Option func(*options)

// WithLogger sets the logger for refusals (info) and methods without a rule
// (error).
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		if logger != nil {
			logger = logger.Named("auth")
		}
		o.logger = logger
	}
}

// WithRealm sets the realm of WWW-Authenticate challenges ("gatehouse" by
// default).
func WithRealm(realm string) Option {
	return func(o *options) { o.realm = realm }
}

// WithStrippedHeaderPrefixes adds header name prefixes (case-insensitive)
// to remove from requests entering the HTTP middleware, on top of
// DefaultStrippedHeaderPrefixes.
func WithStrippedHeaderPrefixes(prefixes ...string) Option {
	return func(o *options) { o.strip = append(o.strip, prefixes...) }
}

// WithRefusalHook sets fn to be called for every refused call, after it is
// logged, for example to record a security event. The context is the
// call's (the request's, over HTTP). fn runs on the call's path: it must be
// quick and safe for concurrent use.
func WithRefusalHook(fn func(context.Context, Refusal)) Option {
	return func(o *options) { o.onRefusal = fn }
}

// New builds a Guard checking tokens with verifier and calls with policy.
func New(verifier TokenVerifier, policy *authz.Policy, opts ...Option) (*Guard, error) {
	o := options{
		logger: zap.NewNop(),
		realm:  "gatehouse",
		strip:  append([]string(nil), DefaultStrippedHeaderPrefixes...),
	}
	for _, opt := range opts {
		opt(&o)
	}

	switch {
	case verifier == nil:
		return nil, errors.New("auth: verifier is nil")
	case policy == nil:
		return nil, errors.New("auth: policy is nil")
	case o.logger == nil:
		return nil, errors.New("auth: logger is nil")
	case strings.ContainsAny(o.realm, "\"\\") || strings.ContainsFunc(o.realm, isControl):
		return nil, fmt.Errorf("auth: realm %q has characters a challenge cannot carry", o.realm)
	}

	for i, p := range o.strip {
		if p == "" {
			return nil, errors.New("auth: empty stripped header prefix")
		}
		o.strip[i] = strings.ToLower(p)
	}

	return &Guard{verifier: verifier, policy: policy, opts: o}, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Check authenticates and authorizes a call to fullMethod carrying the
// given Authorization header (or authorization metadata) values. It returns
// the caller's principal, nil for a public method called without a token,
// or an error wrapping a jwtauth or authz sentinel. It logs nothing; the
// interceptors and the middleware do.
func (g *Guard) Check(
	ctx context.Context,
	fullMethod string,
	authorization []string,
) (*jwtauth.Principal, error) {
	token, err := jwtauth.ParseAuthorization(authorization)

	return g.check(ctx, fullMethod, len(authorization) > 0, token, err)
}

// check is Check with the Authorization values already parsed: present says
// whether there were any, token and tokenErr are what parsing them gave.
func (g *Guard) check(
	ctx context.Context,
	fullMethod string,
	present bool,
	token string,
	tokenErr error,
) (*jwtauth.Principal, error) {
	rule, ok := g.policy.Rule(fullMethod)
	if !ok {
		return nil, fmt.Errorf("%w: method %q: %w", authz.ErrForbidden, fullMethod, authz.ErrNoRule)
	}

	if rule.GetPublic() && !present {
		return nil, nil
	}

	if tokenErr != nil {
		return nil, tokenErr
	}

	p, err := g.verifier.Verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", jwtauth.Fingerprint(token), err)
	}

	if err := authz.Evaluate(rule, p); err != nil {
		return p, fmt.Errorf("method %s, subject %q: %w", fullMethod, p.Subject, err)
	}

	return p, nil
}

// refused records why a call was refused and passes it to the hook, if
// any. A method without a rule is a deployment bug and is logged as an
// error; the rest are caller problems.
func (g *Guard) refused(
	ctx context.Context,
	transport, method string,
	p *jwtauth.Principal,
	err error,
) {
	g.logRefusal(transport, method, p, err)

	if g.opts.onRefusal != nil {
		g.opts.onRefusal(ctx, Refusal{Transport: transport, Method: method, Principal: p, Err: err})
	}
}

func (g *Guard) logRefusal(transport, method string, p *jwtauth.Principal, err error) {
	level := zapcore.InfoLevel
	if errors.Is(err, authz.ErrNoRule) || errors.Is(err, jwtauth.ErrKeysUnavailable) {
		level = zapcore.ErrorLevel
	}

	ce := g.opts.logger.Check(level, "call refused")
	if ce == nil {
		return
	}

	fields := []zap.Field{
		zap.String("transport", transport),
		zap.String("method", method),
		zap.Error(err),
	}
	if p != nil {
		fields = append(fields, zap.String("subject", p.Subject),
			zap.String("clientID", p.ClientID))
	}
	ce.Write(fields...)
}

// refusal is how a Check error is answered: the RFC 6750 challenge (whose
// status picks the gRPC code) and the short message for the caller.
func refusal(err error) jwtauth.Challenge {
	if !errors.Is(err, authz.ErrForbidden) {
		return jwtauth.ChallengeFor(err)
	}

	if denied, ok := errors.AsType[*authz.DeniedError](err); ok &&
		denied.Requirement == authz.RequirementScopes {
		return jwtauth.InsufficientScope("insufficient scope", denied.Scopes...)
	}

	return jwtauth.InsufficientScope("permission denied")
}
