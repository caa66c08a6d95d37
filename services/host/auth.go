package host

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/gatehouse-dev/gatehouse/policy"
)

// errPolicyNotLoaded denies calls that come before Run loaded the policy;
// none can, since the server only accepts connections afterwards.
var errPolicyNotLoaded = errors.New("access policy not loaded yet")

// servedPolicy is the access policy of the served methods. The interceptor
// chain is built by New, before services are registered; Run loads the
// policy once they are. It is safe for concurrent use.
type servedPolicy struct {
	p atomic.Pointer[policy.Policy]
}

// Check implements peerauth.Policy, denying everything until loaded.
func (s *servedPolicy) Check(fullMethod, caller string) error {
	p := s.p.Load()
	if p == nil {
		return errPolicyNotLoaded
	}

	return p.Check(fullMethod, caller)
}

// loadPolicy reads the rules of every registered method, or says which
// methods lack a usable one.
func (h *Host) loadPolicy() error {
	opts := []policy.Option{policy.WithReflectionCallers(h.cfg.ReflectionCallers...)}
	if h.cfg.KnownServices != nil {
		opts = append(opts, policy.WithKnownServices(h.cfg.KnownServices...))
	}

	p, err := policy.Load(h.server.GetServiceInfo(), opts...)
	if err != nil {
		return fmt.Errorf("host: %s: %w", h.cfg.Service, err)
	}

	h.policy.p.Store(p)

	for _, m := range p.Methods() {
		r, _ := p.Rule(m)
		h.logger.Debug("access rule", zap.String("method", m),
			zap.Strings("callers", r.Callers), zap.String("origin", string(r.Origin)))
	}

	h.logger.Info("access policy loaded", zap.Int("methods", len(p.Methods())),
		zap.Bool("dry_run", h.cfg.AuthDryRun))

	return nil
}

// waitCertificate waits for the first certificate and checks that it is the
// instance's own identity. It reports false without error when ctx ended
// first.
func (h *Host) waitCertificate(ctx context.Context) (bool, error) {
	src := h.cfg.Certificates

	select {
	case <-src.Ready():
	default:
		h.logger.Info("not ready: waiting for the first certificate")
	}

	if err := src.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			h.logger.Info("stopped before a certificate was loaded")
			return false, nil
		}

		return false, fmt.Errorf("host: %s: %w", h.cfg.Service, err)
	}

	id := src.Bundle().ID
	if id.Service() != h.cfg.Service || id.TrustDomain() != h.cfg.TrustDomain {
		return false, fmt.Errorf("host: certificate carries %s, but this is service %q "+
			"in trust domain %q", id, h.cfg.Service, h.cfg.TrustDomain)
	}

	return true, nil
}
