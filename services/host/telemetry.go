package host

import (
	"context"
	"errors"
	"fmt"
	"net"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/gatehouse-dev/gatehouse/tracing"
)

// Telemetry is the observability of an instance. A nil field turns its
// part off, so the zero value observes nothing; the binaries set every
// field from their telemetry kit.
type Telemetry struct {
	// Metrics receives the gRPC server metrics (grpc_server_*, by method
	// and code), and the client metrics of DialOptions.
	Metrics prometheus.Registerer
	// Tracing continues the caller's trace in every call, and records a
	// server span per call when its export is on.
	Tracing *tracing.Tracing
	// AccessLog receives one line per call (named "access"), except health
	// checks, naming the calling service and the end user.
	AccessLog *zap.Logger
	// Events records refused callers and tokens as security events.
	Events *securityevent.Emitter
}

// observability is what New builds from Telemetry for the server; nil
// fields are off.
type observability struct {
	metrics *grpcprom.ServerMetrics
	access  *accesslog.Server
}

// newObservability builds the server metrics and the access log of the
// instance id, whose callers come from trustDomain.
func newObservability(t Telemetry, id, trustDomain string) (observability, error) {
	var (
		o   observability
		err error
	)

	if t.Metrics != nil {
		if o.metrics, err = metrics.NewGRPCServer(t.Metrics); err != nil {
			return o, fmt.Errorf("host: %w", err)
		}
	}

	if t.AccessLog != nil {
		o.access, err = accesslog.NewServer(t.AccessLog,
			accesslog.WithInstance(id),
			accesslog.WithCaller(callerName(trustDomain)),
			accesslog.WithPrincipal(jwtauth.NameFrom),
			accesslog.WithSkip(func(method string) bool {
				return method == healthpb.Health_Check_FullMethodName
			}),
		)
		if err != nil {
			return o, fmt.Errorf("host: %w", err)
		}
	}

	return o, nil
}

// statsHandlers returns the stats handlers of the server: tracing first,
// so the trace id is in the context when the access log reads it. The access
// log reads it in the context of its TagRPC, which no interceptor reaches, so
// with an access log tracing is a stats handler too (grpc-go builds the
// stats events for the access log anyway). Without one, tracing takes the
// interceptors of ServerOptions when export is off, which come first in the
// chain as the options returned here come first.
func (o observability) statsHandlers(t Telemetry) []grpc.ServerOption {
	var opts []grpc.ServerOption
	switch {
	case t.Tracing != nil && o.access != nil:
		opts = append(opts, grpc.StatsHandler(t.Tracing.ServerHandler()))
	case t.Tracing != nil:
		opts = append(opts, t.Tracing.ServerOptions()...)
	}
	if o.access != nil {
		opts = append(opts, grpc.StatsHandler(o.access))
	}

	return opts
}

// recoveryHandler is the access log's panic hook when there is an access
// log (it also marks the call's line), else fallback.
func (o observability) recoveryHandler(
	fallback recovery.RecoveryHandlerFuncContext,
) recovery.RecoveryHandlerFuncContext {
	if o.access != nil {
		return o.access.Recovered
	}

	return fallback
}

func (o observability) metricsUnary() grpc.UnaryServerInterceptor {
	if o.metrics == nil {
		return passUnary
	}

	return o.metrics.UnaryServerInterceptor()
}

func (o observability) metricsStream() grpc.StreamServerInterceptor {
	if o.metrics == nil {
		return passStream
	}

	return o.metrics.StreamServerInterceptor()
}

func (o observability) accessUnary() grpc.UnaryServerInterceptor {
	if o.access == nil {
		return passUnary
	}

	return o.access.UnaryServerInterceptor()
}

func (o observability) accessStream() grpc.StreamServerInterceptor {
	if o.access == nil {
		return passStream
	}

	return o.access.StreamServerInterceptor()
}

// passUnary stands in the chain for a part that is off.
func passUnary(
	ctx context.Context,
	req any,
	_ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	return handler(ctx, req)
}

// passStream stands in the chain for a part that is off.
func passStream(
	srv any,
	ss grpc.ServerStream,
	_ *grpc.StreamServerInfo,
	handler grpc.StreamHandler,
) error {
	return handler(srv, ss)
}

// DialOptions returns what a service adds to its connections to other
// services, the same in every one: tracing's dial options (the trace
// continues in the callee), and the client interceptors, first =
// outermost: metrics (grpc_client_*), the request id of the incoming call
// (x-request-id), and the end user's bearer token of the incoming call, so
// the callee checks the same user. Call it once per Metrics registry: the
// client metrics are registered with it.
func DialOptions(t Telemetry) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if t.Tracing != nil {
		opts = append(opts, t.Tracing.DialOptions()...)
	}

	if t.Metrics != nil {
		m, err := metrics.NewGRPCClient(t.Metrics)
		if err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}

		opts = append(opts,
			grpc.WithChainUnaryInterceptor(m.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(m.StreamClientInterceptor()))
	}

	return append(opts,
		grpc.WithChainUnaryInterceptor(
			requestid.UnaryClientInterceptor(),
			auth.ForwardUnaryClientInterceptor(),
		),
		grpc.WithChainStreamInterceptor(
			requestid.StreamClientInterceptor(),
			auth.ForwardStreamClientInterceptor(),
		),
	), nil
}

// callerName returns the function naming the calling service for access
// lines: the identity peerauth found or, for a call refused before the
// access log's interceptor ran, the identity in the verified certificate.
func callerName(trustDomain string) func(context.Context) string {
	return func(ctx context.Context) string {
		if id, ok := peerauth.Caller(ctx); ok {
			return id.String()
		}

		// An identity of another trust domain comes with an error and is
		// still worth naming.
		id, _ := peerauth.PeerIdentity(ctx, trustDomain)

		return id.String()
	}
}

// peerRefused records a caller refused by the mTLS policy.
func (h *Host) peerRefused(ctx context.Context, r peerauth.Refusal) {
	h.cfg.Telemetry.Events.PeerRefused(ctx, securityevent.PeerRefused{
		Peer:     r.PeerAddr,
		Identity: r.Caller.String(),
		Reason:   peerReason(r),
	})
}

// peerReason is the metric label of a peerauth refusal.
func peerReason(r peerauth.Refusal) string {
	switch {
	case r.Code == codes.PermissionDenied:
		return "not_allowed"
	case errors.Is(r.Err, peerauth.ErrNoTLS):
		return "no_tls"
	case errors.Is(r.Err, peerauth.ErrNotVerified):
		return "not_verified"
	case errors.Is(r.Err, peerauth.ErrTrustDomain):
		return "other_trust_domain"
	default:
		return "bad_identity"
	}
}

// tokenRefused records a refused end-user token: denied by the method's
// user rule, or not accepted at all. The client address is the calling
// service's; the end user's is known at the gateway only.
func (h *Host) tokenRefused(ctx context.Context, r auth.Refusal) {
	events := h.cfg.Telemetry.Events
	if events == nil {
		return
	}

	ip := peerIP(ctx)

	if errors.Is(r.Err, authz.ErrForbidden) {
		rule := "method user rule"
		if denied, ok := errors.AsType[*authz.DeniedError](r.Err); ok {
			rule += ": " + denied.Requirement
		}

		events.AuthzDenied(ctx, securityevent.AuthzDenied{
			Principal: r.Principal.Name(),
			Method:    r.Method, ClientIP: ip, Rule: rule,
		})

		return
	}

	events.AuthFailure(ctx, securityevent.AuthFailure{
		Reason: securityevent.TokenReason(r.Err), ClientIP: ip, Method: r.Method, Detail: r.Err.Error(),
	})
}

// peerIP is the IP address of the peer of ctx, "" when unknown.
func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}

	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}

	return host
}
