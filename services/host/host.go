// Package host runs one gRPC service instance the Gatehouse way: a listener
// on a loopback or private address that speaks mutual TLS only, the
// standard interceptor chain (with per-method authorization of the calling
// service and of the end user's token, metrics, tracing, access log), the
// grpc.health.v1 service, server reflection, registration in Consul with a
// gRPC health check over mutual TLS that is kept across agent restarts, and
// an orderly shutdown (NOT_SERVING, out of rotation, deregister, drain).
// cmd/catalog and cmd/orders are thin wrappers around it.
//
// The instance is not ready until its first certificate is loaded: until
// then it reports NOT_SERVING and is not registered in Consul. Then it
// serves, and reports SERVING once its dependencies have appeared; it may
// start before Consul and before the services it calls.
package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/mtls"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// InstanceHeader is the response header naming the instance that served a
// call. Clients and tests use it to see load balancing and failover.
const InstanceHeader = "x-gatehouse-instance"

// Config describes one service instance.
type Config struct {
	// Service is the name registered in Consul, e.g. "catalog".
	Service string
	// ListenAddr is host:port to listen on; port 0 picks a free one.
	ListenAddr string
	// Version goes into the registration metadata.
	Version string
	// Consul is the agent the instance registers with; nil runs without
	// registration (unit tests).
	Consul *api.Client
	// DrainTimeout bounds how long in-flight calls may take at shutdown.
	DrainTimeout time.Duration
	// LeaveTimeout bounds how long shutdown waits, after reporting
	// NOT_SERVING, for Consul to stop listing the instance as passing
	// before it deregisters anyway; default 5s.
	LeaveTimeout time.Duration
	// Dependencies must each be available once before the instance
	// reports SERVING; see Dependency.
	Dependencies []Dependency
	// Logger is the instance's logger; nil means no logging.
	Logger *zap.Logger
	// Certificates is the instance's certificate, key and trusted CAs, kept
	// current from files. Required: there is no plaintext listener. Its
	// identity must be Service in TrustDomain. The caller closes it after
	// Run returns.
	Certificates *certsource.Source
	// TrustDomain is the trust domain of this instance and of every caller;
	// empty means identity.DefaultTrustDomain.
	TrustDomain string
	// KnownServices are the service names the access policy may name; nil
	// means policy.DefaultServices.
	KnownServices []string
	// ReflectionCallers may call server reflection; nil means nobody.
	ReflectionCallers []string
	// AuthDryRun logs calls the access policy would deny instead of
	// denying them. Callers without a verified identity are refused anyway.
	// It does not apply to end-user tokens (Tokens).
	AuthDryRun bool
	// Tokens verifies the end user's bearer token, which every call to a
	// method whose user rule is not public must carry: each service checks
	// it against the method's (gatehouse.policy.v1.method) user rule, so a
	// caller inside the network cannot skip the gateway's check. Required;
	// the caller closes it after Run returns.
	Tokens auth.TokenVerifier
	// InstanceID is the unique id of the instance in Consul, InstanceHeader,
	// logs and telemetry; empty means discovery.NewInstanceID(Service).
	InstanceID string
	// Telemetry is the instance's metrics, tracing, access log and security
	// events; the zero value turns them all off.
	Telemetry Telemetry
}

// maxInstanceID bounds Config.InstanceID.
const maxInstanceID = 128

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("host: service name is empty")
	case c.ListenAddr == "":
		return errors.New("host: listen address is empty")
	case c.DrainTimeout < 0:
		return errors.New("host: negative drain timeout")
	case c.LeaveTimeout < 0:
		return errors.New("host: negative leave timeout")
	case c.Certificates == nil:
		return errors.New("host: certificate source is required; there is no plaintext mode")
	case c.Tokens == nil:
		return errors.New("host: token verifier is required; services check the user's " +
			"token too")
	case len(c.InstanceID) > maxInstanceID || strings.ContainsFunc(c.InstanceID, badIDRune):
		return fmt.Errorf("host: instance id %q: want at most %d of A-Z a-z 0-9 . _ -",
			c.InstanceID, maxInstanceID)
	}

	if err := identity.ValidateService(c.Service); err != nil {
		return fmt.Errorf("host: %w", err)
	}

	for i, d := range c.Dependencies {
		if d.Name == "" || d.Check == nil {
			return fmt.Errorf("host: dependency %d needs a name and a check", i)
		}
	}

	if c.TrustDomain != "" {
		if err := identity.ValidateTrustDomain(c.TrustDomain); err != nil {
			return fmt.Errorf("host: %w", err)
		}
	}

	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("host: listen address %q: %w", c.ListenAddr, err)
	}

	return nil
}

func badIDRune(r rune) bool {
	return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') &&
		r != '.' && r != '_' && r != '-'
}

// Host owns one gRPC server, its listener and its registration.
// Create it with New, register services on Server(), then call Run.
type Host struct {
	cfg    Config
	id     string
	logger *zap.Logger
	lis    net.Listener
	server *grpc.Server
	health *health.Server
	// policy is loaded by Run, before the server accepts connections.
	policy servedPolicy
	// guard is built by Run, before the server accepts connections.
	guard servedGuard
	// metrics is nil without Config.Telemetry.Metrics.
	metrics *grpcprom.ServerMetrics
}

// New validates cfg, listens, and builds the gRPC server with the standard
// interceptor chain. The listener is open when New returns, so Addr is
// known before Run.
func New(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.LeaveTimeout == 0 {
		cfg.LeaveTimeout = 5 * time.Second
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = identity.DefaultTrustDomain
	}

	validator, err := validation.New(validation.WithLogger(cfg.Logger))
	if err != nil {
		return nil, err
	}

	creds, err := mtls.NewServerCredentials(cfg.Certificates, mtls.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}

	if cfg.InstanceID == "" {
		cfg.InstanceID = discovery.NewInstanceID(cfg.Service)
	}
	id := cfg.InstanceID
	h := &Host{
		cfg:    cfg,
		id:     id,
		logger: cfg.Logger.With(zap.String("instance", id)),
		health: health.NewServer(),
	}

	authorizer, err := peerauth.New(&h.policy, peerauth.WithLogger(h.logger),
		peerauth.WithTrustDomain(cfg.TrustDomain), peerauth.WithDryRun(cfg.AuthDryRun),
		peerauth.WithRefusalHook(h.peerRefused))
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}

	obs, err := newObservability(cfg.Telemetry, id, cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	h.metrics = obs.metrics

	recoverOpt := recovery.WithRecoveryHandlerContext(obs.recoveryHandler(h.recovered))

	// Interceptor order, first = outermost, the same in every service:
	//  1. metrics count every call by code, refused ones too;
	//  2. recovery turns a panic anywhere below into Internal (with the
	//     access log, its hook marks the call's line);
	//  3. the instance header is set before any error, so failures can be
	//     traced to an instance;
	//  4. peerauth refuses a calling service without a verified mTLS
	//     identity (Unauthenticated) or not allowed to call the method
	//     (PermissionDenied) before its request is even looked at;
	//  5. the auth guard checks the end user's bearer token against the
	//     method's user rule (Unauthenticated, PermissionDenied);
	//  6. validation refuses bad input (InvalidArgument);
	//  7. the access log keeps the innermost context, so its line names the
	//     caller and the principal steps 4 and 5 found (a call refused on
	//     the way gets the caller from its certificate and no principal).
	// Stats handlers: tracing's server handler, then the access log, which
	// reads the span. Parts Telemetry turns off pass calls through. The
	// transport below all of them accepts mutual TLS only (see package
	// mtls).
	opts := append(obs.statsHandlers(cfg.Telemetry),
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(
			obs.metricsUnary(),
			recovery.UnaryServerInterceptor(recoverOpt),
			h.unaryInstanceHeader,
			authorizer.UnaryServerInterceptor(),
			h.guard.unary,
			validator.UnaryServerInterceptor(),
			obs.accessUnary(),
		),
		grpc.ChainStreamInterceptor(
			obs.metricsStream(),
			recovery.StreamServerInterceptor(recoverOpt),
			h.streamInstanceHeader,
			authorizer.StreamServerInterceptor(),
			h.guard.stream,
			validator.StreamServerInterceptor(),
			obs.accessStream(),
		),
	)

	// Listen last, so that no error above leaves a listener open.
	if h.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("host: listen on %q: %w", cfg.ListenAddr, err)
	}

	h.server = grpc.NewServer(opts...)
	// Not serving until Run has the access policy and a certificate.
	h.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(h.server, h.health)
	// Reflection is registered but denied to every caller unless
	// ReflectionCallers names some (see package policy); it needs no user
	// token (see publicBuiltins).
	reflection.Register(h.server)

	return h, nil
}

// ID is the unique instance id used in Consul and in InstanceHeader.
func (h *Host) ID() string { return h.id }

// Addr is the address the instance listens on.
func (h *Host) Addr() net.Addr { return h.lis.Addr() }

// Server is the gRPC server to register services on before Run.
func (h *Host) Server() *grpc.Server { return h.server }

func (h *Host) recovered(ctx context.Context, p any) error {
	method, _ := grpc.Method(ctx)
	h.logger.Error("panic in handler", zap.String("method", method),
		zap.Any("panic", p), zap.StackSkip("stack", 3))

	return status.Error(codes.Internal, "internal error")
}

func (h *Host) unaryInstanceHeader(
	ctx context.Context,
	req any,
	_ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(InstanceHeader, h.id))

	return handler(ctx, req)
}

func (h *Host) streamInstanceHeader(
	srv any,
	ss grpc.ServerStream,
	_ *grpc.StreamServerInfo,
	handler grpc.StreamHandler,
) error {
	_ = ss.SetHeader(metadata.Pairs(InstanceHeader, h.id))

	return handler(srv, ss)
}
