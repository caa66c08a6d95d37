package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/gateway"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Product ids the fault-injecting backends treat specially. All of them
// pass validation, so they reach the backend.
const (
	slowProduct       = "p-slow"          // blocks until the call's context ends
	backendPanic      = "p-panic"         // the catalog handler panics
	gatewayPanic      = "p-gateway-panic" // the gateway's connection panics
	backendInstanceID = "catalog-test-1"
	// leakMarker is in every internal error the fixtures raise; it must
	// never reach a client.
	leakMarker = "10.9.8.7:6543"
)

// Test limits: short enough for the tests, long enough for a loaded
// machine running -race.
const (
	productTimeout    = time.Second
	productMaxTimeout = 2 * time.Second
	readHeaderTimeout = time.Second
	readTimeout       = 2 * time.Second
	maxHeaderBytes    = 16 << 10
	maxBodyBytes      = 64 << 10
)

// stack is a gateway in front of real catalog and orders services, each on
// its own 127.0.0.1 listener, with probes on every hop.
type stack struct {
	addr string // host:port of the gateway
	url  string // http://host:port

	catalogCalls *callProbe
	ordersCalls  *callProbe
	// slowCalls receives one event per slow call, when its context ends.
	slowCalls chan slowCall
	// watches receives one event per WatchOrder call, when it returns.
	watches chan watchEnd

	logs *observer.ObservedLogs
}

type slowCall struct {
	method      string
	hadDeadline bool
	err         error // the context's error once it ended
}

type watchEnd struct {
	id  string
	err error
}

type stackOptions struct {
	// catalogTarget, when set, replaces the catalog backend the gateway
	// calls (an address nothing listens on, say).
	catalogTarget string
	// noFaults turns the fault-injecting product ids into ordinary
	// unknown products.
	noFaults bool
	// accessLog puts the access log layer around the gateway, as the
	// binary does, so the gateway sees a wrapped response writer.
	accessLog bool
	// perIP, with accessLog, adds a per-IP rate limit with this policy in
	// front of the gateway, resolving methods with Gateway.Method as the
	// binary does.
	perIP *ratelimit.Policy
}

// oncePerHour is a rule that lets a client burst requests, then one an hour.
func oncePerHour(burst int) ratelimit.Rule {
	return ratelimit.Rule{Rate: 1.0 / 3600, Burst: burst}
}

// perIPStage is a per-IP limit with policy over an in-process limiter.
func perIPStage(tb testing.TB, policy ratelimit.Policy,
	resolve httplimit.MethodResolver,
) *httplimit.Stage {
	tb.Helper()

	limiter, err := ratelimit.NewLocal()
	if err != nil {
		tb.Fatalf("limiter: %v", err)
	}
	ips, err := clientip.New(nil)
	if err != nil {
		tb.Fatalf("client IP resolver: %v", err)
	}
	stage, err := httplimit.NewIPStage(limiter, policy, ips,
		httplimit.WithMethodResolver(resolve))
	if err != nil {
		tb.Fatalf("per-IP stage: %v", err)
	}

	return stage
}

func newStack(tb testing.TB, opts stackOptions) *stack {
	tb.Helper()

	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	s := &stack{
		catalogCalls: &callProbe{},
		ordersCalls:  &callProbe{},
		slowCalls:    make(chan slowCall, 64),
		watches:      make(chan watchEnd, 64),
		logs:         logs,
	}

	store, err := catalog.NewStore(catalog.SampleProducts())
	if err != nil {
		tb.Fatalf("catalog store: %v", err)
	}
	catSvc, err := catalog.NewServer(store)
	if err != nil {
		tb.Fatalf("catalog server: %v", err)
	}
	catalogAddr := serveGRPC(tb, s.catalogCalls, func(gs *grpc.Server) {
		catalogv1.RegisterCatalogServiceServer(gs, &faultyCatalog{
			Server: catSvc, slow: s.slowCalls, off: opts.noFaults})
	})

	toCatalog := dial(tb, catalogAddr)
	ordSvc, err := orders.NewServer(orders.NewStore(), catalogv1.NewCatalogServiceClient(toCatalog),
		orders.WithStepInterval(time.Hour)) // orders stay RESERVED: watches stay open
	if err != nil {
		tb.Fatalf("orders server: %v", err)
	}
	tb.Cleanup(ordSvc.Close)
	ordersAddr := serveGRPC(tb, s.ordersCalls, func(gs *grpc.Server) {
		ordersv1.RegisterOrderServiceServer(gs, &trackedOrders{Server: ordSvc, ended: s.watches})
	})

	validator, err := validation.New()
	if err != nil {
		tb.Fatalf("validator: %v", err)
	}
	gwCatalogTarget := catalogAddr
	if opts.catalogTarget != "" {
		gwCatalogTarget = opts.catalogTarget
	}
	edge := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(validator.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(validator.StreamClientInterceptor()),
	}

	gw, err := gateway.New(gateway.Config{
		Catalog:        panickyConn{dial(tb, gwCatalogTarget, edge...), opts.noFaults},
		Orders:         dial(tb, ordersAddr, edge...),
		OpenAPI:        openapi.Document,
		Logger:         logger,
		MaxHeaderBytes: maxHeaderBytes,
		MaxBodyBytes:   maxBodyBytes,
		Routes: map[string]gateway.RouteLimits{
			catalogv1.CatalogService_GetProduct_FullMethodName: {
				Timeout: productTimeout, MaxTimeout: productMaxTimeout},
		},
	})
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}

	var handler http.Handler = gw
	if opts.accessLog {
		access, err := accesslog.NewHTTP(logger)
		if err != nil {
			tb.Fatalf("access log: %v", err)
		}
		layers := gateway.Layers{AccessLog: access}
		if opts.perIP != nil {
			layers.PerIP = perIPStage(tb, *opts.perIP, gw.Method)
		}
		handler = layers.Wrap(gw)
	}

	srv, err := gateway.NewHTTPServer(handler, gateway.ServerConfig{
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		Logger:            logger,
	})
	if err != nil {
		tb.Fatalf("NewHTTPServer: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("gateway Serve: %v", err)
		}
	})

	s.addr = lis.Addr().String()
	s.url = "http://" + s.addr

	return s
}

// serveGRPC runs a gRPC server on 127.0.0.1 with the interceptor chain of
// services/host (recovery, instance header, validation) plus probe.
func serveGRPC(tb testing.TB, probe *callProbe, register func(*grpc.Server)) string {
	tb.Helper()

	validator, err := validation.New()
	if err != nil {
		tb.Fatalf("validator: %v", err)
	}
	recovered := recovery.WithRecoveryHandler(func(any) error {
		return status.Error(codes.Internal, "internal error")
	})
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recovered),
			probe.unary, validator.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recovered),
			probe.stream, validator.StreamServerInterceptor()),
	)
	register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer()) // SERVING

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	tb.Cleanup(func() {
		gs.Stop()
		if err := <-done; err != nil {
			tb.Errorf("grpc Serve: %v", err)
		}
	})

	return lis.Addr().String()
}

func dial(tb testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()

	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient("passthrough:///"+target, opts...)
	if err != nil {
		tb.Fatalf("dial %s: %v", target, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })

	return conn
}

// callProbe counts the calls that reach a backend and keeps the incoming
// metadata and deadline of the last one. It is safe for concurrent use.
type callProbe struct {
	calls atomic.Int64

	mu           sync.Mutex
	last         metadata.MD
	lastDeadline time.Time // zero when the call had none
}

func (p *callProbe) record(ctx context.Context) {
	p.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	deadline, _ := ctx.Deadline()

	p.mu.Lock()
	p.last, p.lastDeadline = md, deadline
	p.mu.Unlock()
}

func (p *callProbe) lastCall() (metadata.MD, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.last, p.lastDeadline
}

func (p *callProbe) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	p.record(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-gatehouse-instance", backendInstanceID,
		"x-backend-secret", leakMarker))

	return handler(ctx, req)
}

func (p *callProbe) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	p.record(ss.Context())
	_ = ss.SetHeader(metadata.Pairs("x-gatehouse-instance", backendInstanceID,
		"x-backend-secret", leakMarker))

	return handler(srv, ss)
}

// faultyCatalog is the real catalog with a slow and a panicking product,
// unless off.
type faultyCatalog struct {
	*catalog.Server
	slow chan<- slowCall
	off  bool
}

func (f *faultyCatalog) GetProduct(
	ctx context.Context,
	req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	if f.off {
		return f.Server.GetProduct(ctx, req)
	}

	switch req.GetId() {
	case slowProduct:
		return nil, f.wait(ctx, "GetProduct")
	case backendPanic:
		panic("catalog store at " + leakMarker + " is corrupt")
	}

	return f.Server.GetProduct(ctx, req)
}

func (f *faultyCatalog) ReserveStock(
	ctx context.Context,
	req *catalogv1.ReserveStockRequest,
) (*catalogv1.ReserveStockResponse, error) {
	for _, it := range req.GetItems() {
		if it.GetProductId() == slowProduct && !f.off {
			return nil, f.wait(ctx, "ReserveStock")
		}
	}

	return f.Server.ReserveStock(ctx, req)
}

// wait blocks until ctx ends, as a backend stuck on a slow dependency
// would, and reports how it ended.
func (f *faultyCatalog) wait(ctx context.Context, method string) error {
	_, hadDeadline := ctx.Deadline()
	<-ctx.Done()
	report(f.slow, slowCall{method: method, hadDeadline: hadDeadline, err: ctx.Err()})

	return status.FromContextError(ctx.Err()).Err()
}

// report sends ev unless nobody has read the last 64: a backend must never
// block on a test that is not listening (the fuzz target, say).
func report[T any](ch chan<- T, ev T) {
	select {
	case ch <- ev:
	default:
	}
}

// trackedOrders is the real orders service reporting when a watch ends.
type trackedOrders struct {
	*orders.Server
	ended chan<- watchEnd
}

func (o *trackedOrders) WatchOrder(
	req *ordersv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse],
) error {
	err := o.Server.WatchOrder(req, stream)
	report(o.ended, watchEnd{id: req.GetId(), err: err})

	return err
}

// panickyConn is the gateway's catalog connection with a bug: it panics
// for one product id, as a faulty interceptor or client library might,
// unless off.
type panickyConn struct {
	grpc.ClientConnInterface
	off bool
}

func (c panickyConn) Invoke(ctx context.Context, method string, args, reply any,
	opts ...grpc.CallOption) error {
	req, ok := args.(*catalogv1.GetProductRequest)
	if ok && req.GetId() == gatewayPanic && !c.off {
		panic("gateway client bug near " + leakMarker)
	}

	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

// rawResponse is what came back on a raw connection. status 0 means the
// server closed the connection without answering.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	// close: the response said Connection: close (net/http's reader takes
	// the header out and reports it here).
	close bool
}

// jsonStatus is the error body every refusal must have.
type jsonStatus struct {
	Code    *int              `json:"code"`
	Message *string           `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// roundTrip writes request on a fresh connection and reads one response.
// The whole exchange is bounded, so a server that hangs fails the test.
func (s *stack) roundTrip(tb testing.TB, request string) rawResponse {
	tb.Helper()

	// A server that answers early (413, say) may close before the whole
	// request is written; its answer is still there to read.
	conn := s.connect(tb)
	_, _ = io.WriteString(conn, request)

	return readResponse(tb, conn, strings.HasPrefix(request, "HEAD "))
}

func (s *stack) connect(tb testing.TB) net.Conn {
	tb.Helper()

	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial gateway: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))

	return conn
}

// readResponse reads one response from conn; a connection closed before
// a status line gives status 0.
func readResponse(tb testing.TB, conn net.Conn, head bool) rawResponse {
	tb.Helper()

	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			tb.Fatalf("no response and no close: %v", err)
		}
		return rawResponse{}
	}
	defer func() { _ = resp.Body.Close() }()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read response body: %v", err)
	}

	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body,
		close: resp.Close}
}

// request builds a raw HTTP/1.1 request; Content-Length is added for a
// non-empty body unless headers set it or Transfer-Encoding.
func request(method, target string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gatehouse.test\r\n")

	framed := false
	for _, h := range headers {
		lower := strings.ToLower(h)
		framed = framed || strings.HasPrefix(lower, "content-length:") ||
			strings.HasPrefix(lower, "transfer-encoding:")
		b.WriteString(h + "\r\n")
	}
	if body != "" && !framed {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)

	return b.String()
}

// decodeStatus checks that body is the JSON status shape and returns it.
func decodeStatus(tb testing.TB, r rawResponse) jsonStatus {
	tb.Helper()

	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("error Content-Type %q, want application/json; body %q", ct, r.body)
	}
	var st jsonStatus
	if err := json.Unmarshal(r.body, &st); err != nil {
		tb.Fatalf("error body is not JSON: %v: %q", err, r.body)
	}
	if st.Code == nil || st.Message == nil || st.Details == nil {
		tb.Fatalf("error body lacks code, message or details: %s", r.body)
	}

	return st
}

// checkNoLeak fails when a response shows internal detail.
func checkNoLeak(tb testing.TB, r rawResponse) {
	tb.Helper()

	all := string(r.body)
	for k, vs := range r.header {
		all += k + ": " + strings.Join(vs, ",") + "\n"
	}
	for _, bad := range []string{leakMarker, "goroutine ", ".go:", "127.0.0.1", "panic"} {
		if strings.Contains(all, bad) {
			tb.Errorf("response leaks %q:\n%s", bad, all)
		}
	}
}

// createOrder places a valid order through the gateway and returns its id.
func (s *stack) createOrder(tb testing.TB) string {
	tb.Helper()

	r := s.roundTrip(tb, request("POST", "/v1/orders", []string{"Content-Type: application/json"},
		`{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":1}]}`))
	if r.status != http.StatusOK {
		tb.Fatalf("create order: status %d %s", r.status, r.body)
	}
	var created struct {
		Order struct {
			ID string `json:"id"`
		} `json:"order"`
	}
	if err := json.Unmarshal(r.body, &created); err != nil || created.Order.ID == "" {
		tb.Fatalf("create order: %v: %s", err, r.body)
	}

	return created.Order.ID
}

// stream is a streaming response whose head and first line have been read.
type stream struct {
	header http.Header
	first  string
	rest   *bufio.Reader // the body after the first line
}

// readFirstStreamLine reads a 200 streaming response's head and first
// line. The body is closed when the test ends.
func readFirstStreamLine(tb testing.TB, conn net.Conn) stream {
	tb.Helper()

	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	if err != nil {
		tb.Fatalf("read stream head: %v", err)
	}
	tb.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("stream status %d", resp.StatusCode)
	}

	rest := bufio.NewReader(resp.Body)
	line, err := rest.ReadString('\n')
	if err != nil {
		tb.Fatalf("read first stream line: %v", err)
	}

	return stream{header: resp.Header, first: line, rest: rest}
}

// awaitWatchEnd waits until the orders backend's watch of id has returned
// and checks it returned with one of the codes in want.
func (s *stack) awaitWatchEnd(tb testing.TB, id string, want ...codes.Code) {
	tb.Helper()

	timeout := time.After(10 * time.Second)
	for {
		select {
		case end := <-s.watches:
			if end.id != id {
				continue
			}
			if got := status.Code(end.err); !slices.Contains(want, got) {
				tb.Fatalf("backend watch ended with %v (%v), want %v", got, end.err, want)
			}
			return
		case <-timeout:
			tb.Fatalf("backend watch of %s still running 10s later", id)
		}
	}
}

// awaitSlowCall waits for the next slow backend call to end.
func (s *stack) awaitSlowCall(tb testing.TB) slowCall {
	tb.Helper()

	select {
	case c := <-s.slowCalls:
		return c
	case <-time.After(10 * time.Second):
		tb.Fatalf("slow backend call still running 10s later")
	}

	return slowCall{}
}
