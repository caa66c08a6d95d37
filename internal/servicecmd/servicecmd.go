// Package servicecmd is the startup every service binary shares: its
// flags, logger, certificates, telemetry, token verifier and Consul client,
// and the host.Config they add up to. cmd/catalog and cmd/orders add only
// what is their own.
package servicecmd

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/gatehouse-dev/gatehouse/services/host"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// Flags are the flags every service binary has.
type Flags struct {
	Log       logconfig.Flags
	Certs     certflags.Flags
	Access    certflags.Auth
	Tokens    authflags.Flags
	Telemetry telemetry.Flags

	Listen string
	Consul string
	Drain  time.Duration
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.Log.Register(fs)
	f.Certs.Register(fs)
	f.Access.Register(fs)
	f.Tokens.Register(fs)
	f.Telemetry.Register(fs, "127.0.0.1:0")
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:0", "gRPC listen address (port 0 picks one)")
	fs.StringVar(&f.Consul, "consul", api.DefaultConfig().Address,
		"Consul agent HTTP address (env CONSUL_HTTP_ADDR)")
	fs.DurationVar(&f.Drain, "drain-timeout", 10*time.Second,
		"longest wait for calls at shutdown")
}

// Service holds the started shared parts of one service binary. Close it
// when Run returns.
type Service struct {
	// Name is the service name, e.g. "catalog".
	Name string
	// Instance is the instance id used in Consul, logs and metrics.
	Instance string
	// Context ends at SIGINT or SIGTERM.
	Context  context.Context
	Logger   *zap.Logger
	Certs    *certsource.Source
	Kit      *telemetry.Kit
	Verifier *jwtauth.Verifier
	Consul   *api.Client
	// Telemetry is what the host and outgoing connections record with.
	Telemetry host.Telemetry

	flags   *Flags
	closers []func()
}

// Start builds the shared parts of the service called name. It waits,
// within -jwt-start-timeout, for the token issuer's keys: without them no
// call that needs a user token could be served.
func (f *Flags) Start(name string) (_ *Service, err error) {
	s := &Service{Name: name, flags: f, Instance: discovery.NewInstanceID(name)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	var closeLog func() error
	if s.Logger, closeLog, err = f.Log.Build(name); err != nil {
		return nil, err
	}
	// Registered first, so it runs last: lines logged while the rest closes
	// are written too.
	s.closers = append(s.closers, func() { _ = closeLog() })
	gctune.Apply(s.Logger)

	if s.Certs, err = f.Certs.Source(name, s.Logger); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = s.Certs.Close() })

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	s.Context = ctx
	s.closers = append(s.closers, stop)

	if s.Kit, err = f.Telemetry.Start(name, s.Instance, s.Logger); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = s.Kit.Close() })
	s.Kit.TrackCertificates(name, s.Certs)
	s.Telemetry = host.Telemetry{
		Metrics:   s.Kit.Registry,
		Tracing:   s.Kit.Tracing,
		AccessLog: s.Logger,
		Events:    s.Kit.Events,
	}

	if s.Verifier, err = f.Tokens.Verifier(ctx, s.Logger); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = s.Verifier.Close() })

	if s.Consul, err = api.NewClient(&api.Config{Address: f.Consul}); err != nil {
		return nil, fmt.Errorf("consul client for %q: %w", f.Consul, err)
	}

	return s, nil
}

// HostConfig is the host configuration of the service.
func (s *Service) HostConfig(version string) host.Config {
	return host.Config{
		Service:           s.Name,
		ListenAddr:        s.flags.Listen,
		Version:           version,
		Consul:            s.Consul,
		DrainTimeout:      s.flags.Drain,
		Logger:            s.Logger,
		Certificates:      s.Certs,
		TrustDomain:       s.flags.Certs.TrustDomain,
		KnownServices:     s.flags.Access.KnownServices,
		ReflectionCallers: s.flags.Access.ReflectionCallers,
		AuthDryRun:        s.flags.Access.DryRun,
		Tokens:            s.Verifier,
		InstanceID:        s.Instance,
		Telemetry:         s.Telemetry,
	}
}

// Close releases everything Start built, newest first. Safe to call once.
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
