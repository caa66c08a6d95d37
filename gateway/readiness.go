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

// readyAttempts is how many health checks /readyz sends a backend before it
// calls the backend not ready. An instance that is shutting down answers
// NOT_SERVING while it still serves calls, until its clients have moved
// away; round robin sends each attempt to the next instance, so one such
// instance does not make the gateway unready.
const readyAttempts = 3

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
// check of the whole server with SERVING, asking up to readyAttempts times
// within timeout; otherwise the last answer's error.
func backendServing(
	ctx context.Context,
	conn grpc.ClientConnInterface,
	timeout time.Duration,
) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	client := healthpb.NewHealthClient(conn)

	var err error
	for range readyAttempts {
		var resp *healthpb.HealthCheckResponse

		resp, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}

		if err == nil {
			err = fmt.Errorf("%w: %v", errNotServing, resp.GetStatus())
		}

		if ctx.Err() != nil {
			break
		}
	}

	return err
}
