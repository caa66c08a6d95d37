package host

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/identity"
)

const (
	// registerBackoffMax caps the retry delay of registration while the
	// agent does not answer: an instance that is not registered gets no
	// traffic, so it asks again at least once a second.
	registerBackoffMax = time.Second

	// leaveMargin is how long shutdown still waits after Consul stopped
	// listing the instance as passing: Consul wakes its clients' blocking
	// queries at once, and this leaves their balancers time to act on it.
	leaveMargin = 250 * time.Millisecond

	// dependencyCheckTimeout bounds one readiness check of a dependency.
	dependencyCheckTimeout = 2 * time.Second

	// dependencyBackoffMax caps the delay between readiness checks of a
	// dependency that is not available yet.
	dependencyBackoffMax = time.Second
)

// Run loads the access policy of the registered services (an error names
// every method without a usable rule), waits for the first certificate and
// starts serving with every service NOT_SERVING. It registers the instance
// in Consul and keeps it registered, retrying until the agent answers
// (discovery.Registrar.Maintain), so the instance may start before Consul.
// Once every dependency in Config.Dependencies is available, it marks every
// service SERVING; then Consul's check passes and clients find it.
//
// When ctx is done it shuts down in order: it stops keeping the
// registration, reports NOT_SERVING, waits (at most LeaveTimeout) until
// Consul no longer lists the instance as passing, deregisters, and drains
// in-flight calls and streams for at most DrainTimeout before a hard stop.
// It returns nil after an orderly shutdown, also one that came before the
// first certificate.
func (h *Host) Run(ctx context.Context) error {
	if err := h.loadPolicy(); err != nil {
		_ = h.lis.Close()
		return err
	}

	if err := h.finishChain(); err != nil {
		_ = h.lis.Close()
		return err
	}

	ready, err := h.waitCertificate(ctx)
	if !ready || err != nil {
		_ = h.lis.Close()
		return err
	}

	registrar, err := h.newRegistrar()
	if err != nil {
		_ = h.lis.Close()
		return err
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- h.server.Serve(h.lis) }()

	h.logger.Info("listening", zap.String("service", h.cfg.Service),
		zap.Stringer("addr", h.lis.Addr()))

	background := h.startBackground(registrar)

	select {
	case err := <-serveErr:
		background.stop()
		h.deregister(registrar)

		return fmt.Errorf("host: serve %s: %w", h.cfg.Service, err)
	case <-ctx.Done():
	}

	h.shutdown(registrar, background)

	// Serve returns nil after GracefulStop or Stop; anything else is news.
	if err := <-serveErr; err != nil {
		return fmt.Errorf("host: serve %s: %w", h.cfg.Service, err)
	}

	return nil
}

// background runs what the instance does beside serving calls: keeping
// its registration and waiting for its dependencies. stop ends both and
// waits for them.
type background struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *background) stop() {
	b.cancel()
	b.wg.Wait()
}

// startBackground keeps registrar's registration (when there is one) and
// marks the instance SERVING once its dependencies are available.
func (h *Host) startBackground(registrar *discovery.Registrar) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel}

	if registrar != nil {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			registrar.Maintain(ctx)
		}()
	}

	b.wg.Add(1)
	go func() {
		defer b.wg.Done()

		if h.waitDependencies(ctx) {
			h.markServing()
		}
	}()

	return b
}

// markServing marks every registered service, and the server as a whole,
// SERVING. After the health server's Shutdown it changes nothing.
func (h *Host) markServing() {
	for name := range h.server.GetServiceInfo() {
		h.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

	h.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.logger.Info("serving", zap.String("service", h.cfg.Service),
		zap.Stringer("addr", h.lis.Addr()))
}

// newRegistrar returns the registrar of this instance, or nil when it runs
// without Consul.
func (h *Host) newRegistrar() (*discovery.Registrar, error) {
	if h.cfg.Consul == nil {
		return nil, nil
	}

	ip, portStr, err := net.SplitHostPort(h.lis.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("host: registration of %s: %w", h.id, err)
	}

	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("host: registration of %s: port %q: %w", h.id, portStr, err)
	}

	// The check connects over mutual TLS: Consul's agent presents its own
	// "consul" identity (allowed to call grpc.health.v1.Health only) and
	// verifies this instance's DNS SAN.
	id, err := identity.New(h.cfg.TrustDomain, h.cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("host: registration of %s: %w", h.id, err)
	}

	services := make([]string, 0, len(h.server.GetServiceInfo()))
	for name := range h.server.GetServiceInfo() {
		services = append(services, name)
	}

	reg := discovery.Registration{
		Service: h.cfg.Service,
		ID:      h.id,
		Address: ip,
		Port:    port,
		Tags:    []string{"grpc"},
		Meta: map[string]string{
			"version":       h.cfg.Version,
			"grpc_services": strings.Join(services, ","),
		},
		CheckTLS:      true,
		TLSServerName: id.DNSName(),
	}

	registrar, err := discovery.NewRegistrar(h.cfg.Consul, reg, discovery.WithLogger(h.logger),
		discovery.WithBackoff(discovery.DefaultBackoffBase, registerBackoffMax))
	if err != nil {
		return nil, fmt.Errorf("host: registration of %s: %w", h.id, err)
	}

	return registrar, nil
}

// shutdown stops the instance in the order Run documents.
func (h *Host) shutdown(registrar *discovery.Registrar, b *background) {
	h.logger.Info("shutting down")

	b.stop()
	h.health.Shutdown() // every service NOT_SERVING; Consul's next check fails
	h.logger.Info("reported not serving")

	h.leave(registrar)
	h.deregister(registrar)
	h.drain()
}

// leave waits, at most LeaveTimeout, until Consul no longer lists the
// instance as passing, and then leaveMargin more for the clients.
//
// Limitation: Consul's view is all it waits for. When Consul is down it
// waits the whole LeaveTimeout for nothing, and clients, which keep their
// last known instances then, learn that this one is gone only when the
// drain closes its connections: calls in flight finish, later ones go to
// the instances whose connections still work, and a call that races the
// close fails with Unavailable unless it is a read, which is retried.
func (h *Host) leave(registrar *discovery.Registrar) {
	if registrar == nil {
		return
	}

	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.LeaveTimeout)
	defer cancel()

	if err := registrar.WaitNotPassing(ctx); err != nil {
		h.logger.Warn("consul may still list the instance as passing; deregistering anyway",
			zap.Duration("waited", time.Since(start)), zap.Error(err))

		return
	}

	timer := time.NewTimer(leaveMargin)
	defer timer.Stop()

	select {
	case <-timer.C:
	case <-ctx.Done():
	}

	h.logger.Info("out of rotation in consul", zap.Duration("took", time.Since(start)))
}

func (h *Host) deregister(registrar *discovery.Registrar) {
	if registrar == nil {
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := registrar.Deregister(ctx); err != nil {
		h.logger.Warn("deregister failed; Consul removes the instance once its check "+
			"has been critical long enough", zap.Error(err))
		return
	}
	h.logger.Info("deregistered")
}

// drain lets in-flight calls and streams finish for at most DrainTimeout,
// then closes whatever is left.
func (h *Host) drain() {
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
