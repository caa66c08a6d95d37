// Package gateway is the REST/JSON edge of Gatehouse: a grpc-gateway mux
// that translates HTTP requests into gRPC calls on the catalog and orders
// backends, plus the operational endpoints /healthz, /readyz and
// /openapi.json.
//
// Errors are always the JSON form of a google.rpc.Status
// ({"code":…,"message":…,"details":[…]}) with the HTTP status that matches
// the gRPC code. Transport failures are logged in full on the gateway but
// reach the client only as a short message, never with backend addresses.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Config holds what the gateway needs. Catalog and Orders are client
// connections to the backends (normally dialed through the Consul
// resolver); the gateway does not own or close them.
type Config struct {
	Catalog grpc.ClientConnInterface
	Orders  grpc.ClientConnInterface
	// OpenAPI is served verbatim at /openapi.json.
	OpenAPI []byte
	// ReadyTimeout bounds each backend health check behind /readyz.
	ReadyTimeout time.Duration
	// Logger records failures; nil means no logging.
	Logger *zap.Logger
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Catalog == nil:
		return errors.New("gateway: catalog connection is nil")
	case c.Orders == nil:
		return errors.New("gateway: orders connection is nil")
	case len(c.OpenAPI) == 0:
		return errors.New("gateway: OpenAPI document is empty")
	case c.ReadyTimeout < 0:
		return errors.New("gateway: negative ready timeout")
	}

	return nil
}

// Gateway is an http.Handler serving the REST API. It is safe for
// concurrent use.
type Gateway struct {
	cfg    Config
	logger *zap.Logger
	mux    *runtime.ServeMux
	root   *http.ServeMux
}

// New builds a Gateway from cfg.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Second
	}

	g := &Gateway{cfg: cfg, logger: cfg.Logger.Named("gateway")}

	marshaler := &runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
		// Unknown JSON fields are refused with 400 rather than silently
		// dropped, so a misspelt field never goes unnoticed.
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithStreamErrorHandler(g.streamError),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		runtime.WithDisablePathLengthFallback(),
	)

	ctx := context.Background()
	catalog := catalogv1.NewCatalogServiceClient(cfg.Catalog)
	if err := catalogv1.RegisterCatalogServiceHandlerClient(ctx, g.mux, catalog); err != nil {
		return nil, fmt.Errorf("gateway: register catalog routes: %w", err)
	}
	orders := ordersv1.NewOrderServiceClient(cfg.Orders)
	if err := ordersv1.RegisterOrderServiceHandlerClient(ctx, g.mux, orders); err != nil {
		return nil, fmt.Errorf("gateway: register orders routes: %w", err)
	}

	g.root = http.NewServeMux()
	g.root.HandleFunc("GET /healthz", g.healthz)
	g.root.HandleFunc("GET /readyz", g.readyz)
	g.root.HandleFunc("GET /openapi.json", g.openapi)
	g.root.Handle("/", g.mux)

	return g, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.root.ServeHTTP(w, r)
}

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

// readyz answers 200 only when every backend has a serving instance, found
// through discovery and asked over gRPC health.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	backends := []struct {
		name string
		conn grpc.ClientConnInterface
	}{{"catalog", g.cfg.Catalog}, {"orders", g.cfg.Orders}}

	for _, b := range backends {
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ReadyTimeout)
		resp, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			g.logger.Debug("backend not ready", zap.String("backend", b.name), zap.Error(err))
			writeJSON(w, http.StatusServiceUnavailable,
				fmt.Sprintf(`{"status":"unavailable","backend":%q}`, b.name))
			return
		}
	}

	writeJSON(w, http.StatusOK, `{"status":"ready"}`)
}

func (g *Gateway) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(g.cfg.OpenAPI)
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// handleError writes err as a JSON status after hiding transport detail.
func (g *Gateway) handleError(
	ctx context.Context,
	mux *runtime.ServeMux,
	m runtime.Marshaler,
	w http.ResponseWriter,
	r *http.Request,
	err error,
) {
	var httpErr *runtime.HTTPStatusError
	if errors.As(err, &httpErr) {
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		return
	}

	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, g.safeStatus(r.Method, r.URL.Path, err))
}

func (g *Gateway) streamError(ctx context.Context, err error) *status.Status {
	method, _ := runtime.RPCMethod(ctx)
	return status.Convert(g.safeStatus("stream", method, err))
}

// safeStatus keeps codes and messages that describe the caller's request and
// replaces those that could describe our infrastructure.
func (g *Gateway) safeStatus(method, path string, err error) error {
	st := status.Convert(err)

	var msg string
	switch st.Code() {
	case codes.Unavailable:
		msg = "service unavailable, try again"
	case codes.DeadlineExceeded:
		msg = "deadline exceeded"
	case codes.Unknown, codes.Internal, codes.DataLoss:
		msg = "internal error"
	default:
		return err
	}

	g.logger.Warn("backend call failed", zap.String("method", method),
		zap.String("path", path), zap.Stringer("code", st.Code()),
		zap.String("detail", st.Message()))

	return status.Error(st.Code(), msg)
}

// handleRoutingError answers unknown routes with 404 and known routes called
// with another HTTP method with 405, both as JSON statuses.
func (g *Gateway) handleRoutingError(
	ctx context.Context,
	mux *runtime.ServeMux,
	m runtime.Marshaler,
	w http.ResponseWriter,
	r *http.Request,
	httpStatus int,
) {
	code := codes.InvalidArgument
	switch httpStatus {
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusMethodNotAllowed:
		code = codes.Unimplemented
	}

	err := &runtime.HTTPStatusError{
		HTTPStatus: httpStatus,
		Err:        status.Error(code, http.StatusText(httpStatus)),
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
