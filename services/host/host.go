// Package host runs one gRPC service instance the Gatehouse way: a listener
// on a loopback or private address that speaks mutual TLS only, the
// standard interceptor chain (with per-method caller authorization), the
// grpc.health.v1 service, server reflection, registration in Consul with a
// gRPC health check over mutual TLS, and an orderly shutdown (NOT_SERVING,
// deregister, drain). cmd/catalog and cmd/orders are thin wrappers around
// it.
//
// The instance is not ready until its first certificate is loaded: until
// then it reports NOT_SERVING and is not registered in Consul.
package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/mtls"
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
	AuthDryRun bool
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("host: service name is empty")
	case c.ListenAddr == "":
		return errors.New("host: listen address is empty")
	case c.DrainTimeout < 0:
		return errors.New("host: negative drain timeout")
	case c.Certificates == nil:
		return errors.New("host: certificate source is required; there is no plaintext mode")
	}

	if err := identity.ValidateService(c.Service); err != nil {
		return fmt.Errorf("host: %w", err)
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

// Host owns one gRPC server, its listener and its registration.
// Create it with New, register services on Server(), then call Run.
type Host struct {
	cfg      Config
	id       string
	logger   *zap.Logger
	lis      net.Listener
	server   *grpc.Server
	health   *health.Server
	services []string
	// policy is loaded by Run, before the server accepts connections.
	policy servedPolicy
	// registrar is set by Run once the instance is registered.
	registrar *discovery.Registrar
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

	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("host: listen on %q: %w", cfg.ListenAddr, err)
	}

	id := discovery.NewInstanceID(cfg.Service)
	h := &Host{
		cfg:    cfg,
		id:     id,
		logger: cfg.Logger.With(zap.String("instance", id)),
		lis:    lis,
		health: health.NewServer(),
	}

	authorizer, err := peerauth.New(&h.policy, peerauth.WithLogger(h.logger),
		peerauth.WithTrustDomain(cfg.TrustDomain), peerauth.WithDryRun(cfg.AuthDryRun))
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("host: %w", err)
	}

	recoverOpt := recovery.WithRecoveryHandlerContext(h.recovered)

	// Interceptor order, first = outermost: recovery turns a panic anywhere
	// below into Internal; the instance header is set before any error so
	// failures can be traced to an instance; peerauth refuses a caller
	// without a verified identity (Unauthenticated) or not allowed for the
	// method (PermissionDenied) before its request is even looked at;
	// validation refuses bad input before the handler runs. The transport
	// below all of them accepts mutual TLS only (see package mtls).
	h.server = grpc.NewServer(
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recoverOpt),
			h.unaryInstanceHeader,
			authorizer.UnaryServerInterceptor(),
			validator.UnaryServerInterceptor(),
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(recoverOpt),
			h.streamInstanceHeader,
			authorizer.StreamServerInterceptor(),
			validator.StreamServerInterceptor(),
		),
	)
	// Not serving until Run has the access policy and a certificate.
	h.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(h.server, h.health)
	// Reflection is registered but denied to every caller unless
	// ReflectionCallers names some (see package policy).
	reflection.Register(h.server)

	return h, nil
}

// ID is the unique instance id used in Consul and in InstanceHeader.
func (h *Host) ID() string { return h.id }

// Addr is the address the instance listens on.
func (h *Host) Addr() net.Addr { return h.lis.Addr() }

// Server is the gRPC server to register services on before Run.
func (h *Host) Server() *grpc.Server { return h.server }

// Run loads the access policy of the registered services (an error names
// every method without a usable rule), waits for the first certificate,
// marks every registered service SERVING, registers the instance in Consul
// and serves until ctx is done. Then it shuts down in order: health
// NOT_SERVING, deregistration, a drain bounded by DrainTimeout, and a hard
// stop. It returns nil after an orderly shutdown, also one that came before
// the first certificate.
func (h *Host) Run(ctx context.Context) error {
	if err := h.loadPolicy(); err != nil {
		_ = h.lis.Close()
		return err
	}

	ready, err := h.waitCertificate(ctx)
	if !ready || err != nil {
		_ = h.lis.Close()
		return err
	}

	for name := range h.server.GetServiceInfo() {
		h.services = append(h.services, name)
		h.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	h.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	serveErr := make(chan error, 1)
	go func() { serveErr <- h.server.Serve(h.lis) }()

	if err := h.register(ctx); err != nil {
		h.server.Stop()
		return errors.Join(err, <-serveErr)
	}
	h.logger.Info("serving", zap.String("service", h.cfg.Service),
		zap.Stringer("addr", h.lis.Addr()))

	select {
	case err := <-serveErr:
		h.deregister()
		return fmt.Errorf("host: serve %s: %w", h.cfg.Service, err)
	case <-ctx.Done():
	}

	h.shutdown()

	// Serve returns nil after GracefulStop or Stop; anything else is news.
	if err := <-serveErr; err != nil {
		return fmt.Errorf("host: serve %s: %w", h.cfg.Service, err)
	}

	return nil
}

func (h *Host) register(ctx context.Context) error {
	if h.cfg.Consul == nil {
		return nil
	}

	ip, portStr, _ := net.SplitHostPort(h.lis.Addr().String())
	port, _ := strconv.Atoi(portStr)

	// The check connects over mutual TLS: Consul's agent presents its own
	// "consul" identity (allowed to call grpc.health.v1.Health only) and
	// verifies this instance's DNS SAN.
	id, err := identity.New(h.cfg.TrustDomain, h.cfg.Service)
	if err != nil {
		return fmt.Errorf("host: registration of %s: %w", h.id, err)
	}

	reg := discovery.Registration{
		Service: h.cfg.Service,
		ID:      h.id,
		Address: ip,
		Port:    port,
		Tags:    []string{"grpc"},
		Meta: map[string]string{
			"version":       h.cfg.Version,
			"grpc_services": strings.Join(h.services, ","),
		},
		CheckTLS:      true,
		TLSServerName: id.DNSName(),
	}
	registrar, err := discovery.NewRegistrar(h.cfg.Consul, reg,
		discovery.WithLogger(h.logger))
	if err != nil {
		return fmt.Errorf("host: registration of %s: %w", h.id, err)
	}
	if err := registrar.Register(ctx); err != nil {
		return fmt.Errorf("host: register %s: %w", h.id, err)
	}
	h.registrar = registrar

	return nil
}

func (h *Host) deregister() {
	if h.registrar == nil {
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := h.registrar.Deregister(ctx); err != nil {
		h.logger.Warn("deregister failed; Consul removes the instance once its check "+
			"has been critical long enough", zap.Error(err))
		return
	}
	h.logger.Info("deregistered")
}

func (h *Host) shutdown() {
	h.logger.Info("shutting down")
	h.health.Shutdown() // every service NOT_SERVING
	h.deregister()

	drained := make(chan struct{})
	go func() {
		h.server.GracefulStop()
		close(drained)
	}()

	timer := time.NewTimer(h.cfg.DrainTimeout)
	defer timer.Stop()

	select {
	case <-drained:
		h.logger.Info("drained")
	case <-timer.C:
		h.logger.Warn("drain timed out; closing remaining calls",
			zap.Duration("drain_timeout", h.cfg.DrainTimeout))
		h.server.Stop()
		<-drained
	}
}

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
