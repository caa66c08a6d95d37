package host

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// errNotServing is what a health dependency reports for a service that
// answers but does not serve.
var errNotServing = errors.New("not serving")

// Dependency is something an instance needs before it can serve, such as a
// service it calls. Run keeps the instance NOT_SERVING, and so out of the
// passing set in Consul, until every dependency has been available once.
// Later outages of a dependency do not change the instance's health: one
// failing service must not take every service that calls it out of
// rotation, and calls to it fail on their own.
type Dependency struct {
	// Name says what is waited for, in logs.
	Name string
	// Check returns nil when the dependency is available. Run calls it,
	// with a deadline, until it does.
	Check func(ctx context.Context) error
}

// HealthDependency returns a Dependency on the gRPC service behind conn,
// available once one of its instances answers a grpc.health.v1 check of
// the whole server with SERVING. conn is normally dialed through Consul, so
// the service must also be registered and passing there.
func HealthDependency(name string, conn grpc.ClientConnInterface) Dependency {
	client := healthpb.NewHealthClient(conn)

	return Dependency{
		Name: name,
		Check: func(ctx context.Context) error {
			resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return fmt.Errorf("check health of %s: %w", name, err)
			}

			if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("check health of %s: %w (%v)", name, errNotServing, s)
			}

			return nil
		},
	}
}

// waitDependencies waits until every dependency has been available once.
// It reports false when ctx ended first.
func (h *Host) waitDependencies(ctx context.Context) bool {
	for _, dep := range h.cfg.Dependencies {
		if !h.waitDependency(ctx, dep) {
			return false
		}
	}

	return true
}

// waitDependency checks dep until it is available, with jittered
// exponential backoff, logging the wait once.
func (h *Host) waitDependency(ctx context.Context, dep Dependency) bool {
	start := time.Now()
	delay := 50 * time.Millisecond

	for attempt := 1; ; attempt++ {
		checkCtx, cancel := context.WithTimeout(ctx, dependencyCheckTimeout)
		err := dep.Check(checkCtx)
		cancel()

		if err == nil {
			if attempt > 1 {
				h.logger.Info("dependency available", zap.String("dependency", dep.Name),
					zap.Duration("waited", time.Since(start)))
			}

			return true
		}

		if attempt == 1 {
			h.logger.Info("not ready: waiting for a dependency",
				zap.String("dependency", dep.Name), zap.Error(err))
		}

		delay = min(2*delay, dependencyBackoffMax)

		timer := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}
