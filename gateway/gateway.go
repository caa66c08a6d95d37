// Package gateway is the REST/JSON edge of Gatehouse: a grpc-gateway mux
// that translates HTTP requests into gRPC calls on the catalog and orders
// backends, plus the operational endpoints /healthz, /readyz and
// /openapi.json.
//
// The edge assumes every client is hostile. Before a request costs a
// backend call it must fit the header limit, carry a valid URL, match a
// route with the right method, have a JSON body of the right type and size
// where the route takes one, and pass the route's deadline rules; each
// failure has its own status (400, 404, 405, 408, 413, 415, 431). Every
// call then runs under a deadline, only allowlisted headers travel to the
// backends as metadata, and only allowlisted backend metadata comes back.
//
// Errors are always the JSON form of a google.rpc.Status
// ({"code":…,"message":…,"details":[…]}) with the HTTP status that matches
// the gRPC code. Transport failures and panics are logged in full on the
// gateway but reach the client only as a short message, never with backend
// addresses or stack traces.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
)

// Config holds what the gateway needs. Catalog and Orders are client
// connections to the backends (normally dialed through the Consul
// resolver, with the validation client interceptors); the gateway does not
// own or close them. Zero limits take the defaults named on each field.
type Config struct {
	Catalog grpc.ClientConnInterface
	Orders  grpc.ClientConnInterface
	// OpenAPI is served verbatim at /openapi.json.
	OpenAPI []byte
	// ReadyChecks are extra conditions of /readyz, by name (the token
	// verifier's keys, say); each returns nil when ready.
	ReadyChecks map[string]func() error
	// ReadyTimeout bounds each backend health check behind /readyz.
	// Default 1s.
	ReadyTimeout time.Duration
	// Logger records failures; nil means no logging.
	Logger *zap.Logger

	// MaxHeaderBytes bounds the request line and headers together; past it
	// the answer is 431. Default 16 KiB. Keep it below the server's own
	// cap (ServerConfig.MaxHeaderBytes), which answers in plain text.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the body of routes that take one; past it the
	// answer is 413. Default 64 KiB. Routes without a body accept none.
	MaxBodyBytes int64
	// Timeout is the deadline of a unary call whose request has no
	// Grpc-Timeout header. Default 10s.
	Timeout time.Duration
	// MaxTimeout caps a Grpc-Timeout header on unary routes. Default 30s.
	MaxTimeout time.Duration
	// StreamTimeout is the deadline of a server-streaming call without a
	// Grpc-Timeout header. Default 5m.
	StreamTimeout time.Duration
	// MaxStreamTimeout caps a Grpc-Timeout header on streaming routes.
	// Default 30m.
	MaxStreamTimeout time.Duration
	// StreamWriteTimeout bounds each write of a stream to the client, so a
	// client that stops reading is cut off. Default 15s.
	StreamWriteTimeout time.Duration
	// Routes overrides the limits of single routes, keyed by full gRPC
	// method name ("/gatehouse.orders.v1.OrderService/CreateOrder").
	Routes map[string]RouteLimits

	// ForwardHeaders lists the request headers passed to the backends as
	// gRPC metadata (under the lowercased name); every other client header
	// is dropped. nil means the default, Authorization only; an empty
	// non-nil list forwards none. Hop-by-hop, transport and gateway-owned
	// headers cannot be listed.
	ForwardHeaders []string
	// Auth authenticates the bearer token of each API request and checks
	// the method's rule before any backend is called. nil serves the API
	// without end-user authentication, which only tests should do:
	// cmd/gateway always sets it.
	Auth *auth.Guard
	// OnAuthRefused, when set, is told of every request Auth refused, with
	// the HTTP status of the answer and the reason (wrapping a jwtauth or
	// authz sentinel; nil unless Auth was built with the NoteRefusal hook);
	// the binary counts it as a security event and feeds the abuse guard.
	// When the token was valid (a 403) and the hook is there, r's context
	// carries the refused caller (jwtauth.PrincipalFrom). r has the headers
	// the client sent, X-Forwarded-For included, so that a client-IP
	// resolver trusting a proxy finds the client behind it.
	OnAuthRefused func(r *http.Request, status int, reason error)
	// PrincipalLimit is the per-principal rate limit stage, applied after
	// authentication; nil means none.
	PrincipalLimit *httplimit.Stage

	// ResponseMetadata lists the backend header and trailer metadata keys
	// passed back to the client as Grpc-Metadata-<Key> (trailers as
	// Grpc-Trailer-<Key>, only when the client sent "TE: trailers"); every
	// other key is dropped. nil means the default, x-gatehouse-instance.
	ResponseMetadata []string
}

// RouteLimits are the limits of one route. A zero field keeps the default
// of the route's kind.
type RouteLimits struct {
	// MaxBodyBytes bounds the body; only routes that take a body use it.
	MaxBodyBytes int64
	// Timeout is the deadline when the request has no Grpc-Timeout header.
	Timeout time.Duration
	// MaxTimeout caps a Grpc-Timeout header.
	MaxTimeout time.Duration
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
	case c.MaxHeaderBytes < 0, c.MaxBodyBytes < 0:
		return errors.New("gateway: negative header or body limit")
	case c.Timeout < 0, c.MaxTimeout < 0, c.StreamTimeout < 0, c.MaxStreamTimeout < 0,
		c.StreamWriteTimeout < 0:
		return errors.New("gateway: negative timeout")
	}

	for method, l := range c.Routes {
		if l.MaxBodyBytes < 0 || l.Timeout < 0 || l.MaxTimeout < 0 {
			return fmt.Errorf("gateway: negative limit for route %s", method)
		}
	}
	for _, h := range c.ForwardHeaders {
		if err := checkForwardable(h); err != nil {
			return err
		}
	}
	for _, k := range c.ResponseMetadata {
		if err := checkMetadataKey(k); err != nil {
			return err
		}
	}

	return nil
}

// withDefaults returns c with every zero limit replaced by its default.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	setDefault(&c.ReadyTimeout, time.Second)
	setDefault(&c.MaxHeaderBytes, 16<<10)
	setDefault(&c.MaxBodyBytes, 64<<10)
	setDefault(&c.Timeout, 10*time.Second)
	setDefault(&c.MaxTimeout, 30*time.Second)
	setDefault(&c.StreamTimeout, 5*time.Minute)
	setDefault(&c.MaxStreamTimeout, 30*time.Minute)
	setDefault(&c.StreamWriteTimeout, 15*time.Second)
	if c.ForwardHeaders == nil {
		c.ForwardHeaders = []string{"Authorization"}
	}
	if c.ResponseMetadata == nil {
		c.ResponseMetadata = []string{"x-gatehouse-instance"}
	}

	return c
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Gateway is an http.Handler serving the REST API. It is safe for
// concurrent use.
type Gateway struct {
	cfg     Config
	logger  *zap.Logger
	mux     *runtime.ServeMux
	routes  *routeTable
	headers *headerPolicy
	// draining is set by Drain; /readyz answers 503 from then on.
	draining atomic.Bool
}

// New builds a Gateway from cfg. It fails when cfg is invalid or names
// limits for a route the gateway does not serve.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	routes, err := newRouteTable(cfg, catalogv1.File_gatehouse_catalog_v1_catalog_proto,
		ordersv1.File_gatehouse_orders_v1_orders_proto)
	if err != nil {
		return nil, err
	}

	g := &Gateway{
		cfg:     cfg,
		logger:  cfg.Logger.Named("gateway"),
		routes:  routes,
		headers: newHeaderPolicy(cfg.ForwardHeaders, cfg.ResponseMetadata),
	}

	marshaler := jsonMarshaler{JSONPb: &runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
		// Unknown JSON fields are refused with 400 rather than silently
		// dropped, so a misspelt field never goes unnoticed.
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithStreamErrorHandler(g.streamError),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithIncomingHeaderMatcher(g.headers.incoming),
		runtime.WithOutgoingHeaderMatcher(g.headers.outgoingHeader),
		runtime.WithOutgoingTrailerMatcher(g.headers.outgoingTrailer),
		// Middleware order, first = outermost: authentication and the
		// method's rule (cheap with the verified-token cache), then the
		// per-principal rate limit, then the route's body, content type and
		// deadline checks. Each refuses before any backend is called.
		runtime.WithMiddlewares(g.labelRoute, g.authenticate, g.limitPrincipal, g.limitRoute),
		// One annotator: grpc-gateway copies the call's metadata once per
		// annotator. It records the route template and innermost context
		// for the access log and metrics, and gives the backends the
		// request id.
		runtime.WithMetadata(annotate),
	)

	ctx := context.Background()
	catalog := catalogv1.NewCatalogServiceClient(firstMessageConn{cfg.Catalog})
	if err := catalogv1.RegisterCatalogServiceHandlerClient(ctx, g.mux, catalog); err != nil {
		return nil, fmt.Errorf("gateway: register catalog routes: %w", err)
	}
	orders := ordersv1.NewOrderServiceClient(firstMessageConn{cfg.Orders})
	if err := ordersv1.RegisterOrderServiceHandlerClient(ctx, g.mux, orders); err != nil {
		return nil, fmt.Errorf("gateway: register orders routes: %w", err)
	}

	return g, nil
}

// ServeHTTP implements http.Handler. Checks that need no route run first
// (header size, URL encoding); then the request goes to an operational
// endpoint or to the grpc-gateway mux, whose middleware applies the
// matched route's limits. A panic anywhere below becomes a 500.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w, received: r}
	defer g.recoverPanic(rw, r)

	r, ok := g.admit(rw, r)
	if !ok {
		return
	}

	switch r.URL.Path {
	case "/healthz", "/readyz", "/openapi.json":
		// Fixed paths: a bounded label for the access log and metrics.
		httpcall.SetRoute(r.Context(), r.URL.Path)
	}

	switch r.URL.Path {
	case "/healthz":
		g.operational(rw, r, g.healthz)
	case "/readyz":
		g.operational(rw, r, g.readyz)
	case "/openapi.json":
		g.operational(rw, r, g.openapi)
	default:
		g.mux.ServeHTTP(rw, r)
	}
}

// RouteTemplate returns the route template path belongs to: the template
// of the API route that would take it, or the path itself for /healthz,
// /readyz and /openapi.json; "" when no route serves path. Layers.Wrap uses
// it to label requests that a layer in front of the gateway refused before
// any route was matched, so metrics and access lines count them under a
// bounded label rather than as unmatched.
func (g *Gateway) RouteTemplate(path string) string {
	switch path {
	case "/healthz", "/readyz", "/openapi.json":
		return path
	}

	return g.routes.template(path)
}

// operational serves an endpoint that answers GET and HEAD only.
func (g *Gateway) operational(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		g.handleRoutingError(r.Context(), g.mux, g.outbound(r), w, r, http.StatusMethodNotAllowed)
		return
	}

	h(w, r)
}

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
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

// annotate is the gateway's grpc-gateway metadata annotator.
func annotate(ctx context.Context, r *http.Request) metadata.MD {
	httpcall.Annotate(ctx, r)

	return requestid.GatewayMetadata(ctx, r)
}
