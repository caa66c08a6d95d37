package accesslog_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/platform"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testTimeout bounds each request and each wait for a log line.
const testTimeout = 10 * time.Second

// step is how far each stepClock moves per reading, so every access line
// has latency_ms == 7.
const step = 7 * time.Millisecond

// stepClock is an injected clock that moves by step on every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func newStepClock() *stepClock {
	return &stepClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	now := c.t
	c.t = c.t.Add(step)

	return now
}

// principalKey is where the test's stand-in authentication puts the
// principal; the access log finds it through WithPrincipal.
type principalKey struct{}

func principalOf(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)

	return p
}

// callerOf names the calling service from the x-test-caller metadata, where
// the real wiring would read the peer's certificate.
func callerOf(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, "x-test-caller"); len(v) > 0 {
		return v[0]
	}

	return ""
}

// authUnary stands in for an authentication interceptor: it accepts any
// x-test-user and puts it in the context as the principal.
func authUnary(
	ctx context.Context,
	req any,
	_ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	if v := metadata.ValueFromIncomingContext(ctx, "x-test-user"); len(v) > 0 {
		ctx = context.WithValue(ctx, principalKey{}, v[0])
	}

	return handler(ctx, req)
}

// instanceHeader sets the x-gatehouse-instance response header as
// services/host does, so the gateway can pass it on.
func instanceHeader(id string) grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		_ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-gatehouse-instance", id))

		return handler(ctx, req)
	}
}

// serviceOptions is the server wiring the notes recommend, for one service:
// tracing before the access log among stats handlers; recovery outermost,
// then the instance header, authentication, and the access log's capture
// interceptor innermost.
func serviceOptions(
	t *testing.T,
	logger *zap.Logger,
	tr *tracing.Tracing,
	instance string,
) []grpc.ServerOption {
	t.Helper()

	access, err := accesslog.NewServer(logger,
		accesslog.WithPrincipal(principalOf),
		accesslog.WithCaller(callerOf),
		accesslog.WithInstance(instance),
		accesslog.WithClock(newStepClock().Now),
	)
	if err != nil {
		t.Fatalf("access log: %v", err)
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(access.Recovered)

	return []grpc.ServerOption{
		grpc.StatsHandler(tr.ServerHandler()),
		grpc.StatsHandler(access),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recoverOpt),
			instanceHeader(instance),
			authUnary,
			access.UnaryServerInterceptor(),
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(recoverOpt),
			access.StreamServerInterceptor(),
		),
	}
}

// clientOptions is the client wiring: tracing, then request id forwarding.
func clientOptions(tr *tracing.Tracing) []grpc.DialOption {
	return append(tr.DialOptions(),
		grpc.WithChainUnaryInterceptor(requestid.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(requestid.StreamClientInterceptor()),
	)
}

// stack is gateway -> orders -> catalog, all in process on 127.0.0.1 over
// real sockets, with every log in one sink.
type stack struct {
	url    string
	client *http.Client
	sink   *testsupport.LogSink
}

// newStack builds the stack with tracing on and export off, as in the
// default configuration of the binaries.
func newStack(t *testing.T) *stack {
	t.Helper()

	logger, sink := testsupport.NewJSONLogger(t)
	tr, err := tracing.New(tracing.Config{ServiceName: "test"})
	if err != nil {
		t.Fatalf("tracing: %v", err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })

	catalogAddr := platform.StartCatalog(t,
		serviceOptions(t, logger.Named("catalog"), tr, "catalog-1")...)
	catalogFromOrders := testsupport.DialGRPC(t, catalogAddr, clientOptions(tr)...)
	ordersAddr := platform.StartOrders(t, catalogFromOrders,
		serviceOptions(t, logger.Named("orders"), tr, "orders-1")...)

	catalogConn := testsupport.DialGRPC(t, catalogAddr, clientOptions(tr)...)
	ordersConn := testsupport.DialGRPC(t, ordersAddr, clientOptions(tr)...)

	gw := platform.GatewayMux(t, catalogConn, ordersConn,
		runtime.WithMetadata(httpcall.Annotate),
		runtime.WithMetadata(requestid.GatewayMetadata),
		runtime.WithErrorHandler(setCodeErrors),
	)

	root := http.NewServeMux()
	root.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	root.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) {
		panic("boom before the response")
	})
	root.HandleFunc("GET /panic-late", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic("boom after the response started")
	})
	root.Handle("/", gw)

	access, err := accesslog.NewHTTP(logger.Named("gateway"),
		accesslog.WithPrincipal(principalOf),
		accesslog.WithClock(newStepClock().Now),
	)
	if err != nil {
		t.Fatalf("http access log: %v", err)
	}

	// Middleware order, first = outermost: tracing, access log, the stand-in
	// authentication, then Capture directly around the router.
	handler := tr.Middleware(access.Middleware(authHTTP(httpcall.Capture(root))))
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	return &stack{url: srv.URL, client: srv.Client(), sink: sink}
}

// authHTTP stands in for the gateway's authentication middleware: it takes
// the principal from X-Test-User.
func authHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := r.Header.Get("X-Test-User"); u != "" {
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, u))
		}
		next.ServeHTTP(w, r)
	})
}

// setCodeErrors is the gateway error handler reduced to what the access log
// needs: it records the gRPC code, then answers as grpc-gateway does.
func setCodeErrors(
	ctx context.Context,
	mux *runtime.ServeMux,
	m runtime.Marshaler,
	w http.ResponseWriter,
	r *http.Request,
	err error,
) {
	httpcall.SetCode(ctx, status.Code(err))
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// reply is what a client got: the body has been read and closed.
type reply struct {
	status int
	header http.Header
	body   string
}

// do sends req with a deadline and reads the whole reply; a transport error
// is returned rather than failing the test, for the abort case.
func (s *stack) do(t *testing.T, req *http.Request) (reply, error) {
	t.Helper()

	ctx, cancel := context.WithTimeout(req.Context(), testTimeout)
	defer cancel()

	resp, err := s.client.Do(req.WithContext(ctx))
	if err != nil {
		return reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()

	body, err := io.ReadAll(resp.Body)

	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}, err
}

// line waits for the access line of logger name with the given request id.
func (s *stack) line(t *testing.T, logger, msg, id string) map[string]any {
	t.Helper()

	return s.sink.WaitFor(t, testTimeout, logger+" "+msg+" "+id,
		func(e map[string]any) bool {
			return e["logger"] == logger && e["msg"] == msg && e["request_id"] == id
		})
}
