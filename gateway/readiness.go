package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// notServingPause is the pause between health checks of a backend whose
// instance answered NOT_SERVING. An instance that is shutting down does
// that while it still serves calls, until its clients have moved away;
// round robin sends the next check to the next instance, and within a
// check interval or so Consul drops the leaving one. So /readyz asks again
// until its timeout before it calls the backend not ready.
const notServingPause = 20 * time.Millisecond

// errNotServing is what an instance that answers but does not serve says.
var errNotServing = errors.New("backend instance not serving")

// readyz answers 200 only when the gateway is not draining (see Drain), every
// ReadyChecks entry passes, and every backend has a serving instance, found
// through discovery and asked over gRPC health.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, `{"status":"draining"}`)
		return
	}

	for name, check := range g.cfg.ReadyChecks {
		if err := check(); err != nil {
			g.logger.Debug("not ready", zap.String("check", name), zap.Error(err))
			writeJSON(w, http.StatusServiceUnavailable,
				fmt.Sprintf(`{"status":"unavailable","check":%q}`, name))
			return
		}
	}

	backends := []struct {
		name string
		conn grpc.ClientConnInterface
	}{{"catalog", g.cfg.Catalog}, {"orders", g.cfg.Orders}}

	for _, b := range backends {
		if err := backendServing(r.Context(), b.conn, g.cfg.ReadyTimeout); err != nil {
			g.logger.Debug("backend not ready", zap.String("backend", b.name), zap.Error(err))
			writeJSON(w, http.StatusServiceUnavailable,
				fmt.Sprintf(`{"status":"unavailable","backend":%q}`, b.name))
			return
		}
	}

	writeJSON(w, http.StatusOK, `{"status":"ready"}`)
}

// backendServing returns nil once an instance behind conn answers a health
// check of the whole server with SERVING. Answers of NOT_SERVING are asked
// again until timeout; an error (no instance, none reachable) is returned
// at once.
func backendServing(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	timeout time.Duration,
) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	client := healthpb.NewHealthClient(conn)

	for {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("check backend health: %w", err)
		}

		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}

		pause := time.NewTimer(notServingPause)
		select {
		case <-ctx.Done():
			pause.Stop()
			return fmt.Errorf("%w: %v until %w", errNotServing, resp.GetStatus(), ctx.Err())
		case <-pause.C:
		}
	}
}
