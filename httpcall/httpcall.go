// Package httpcall records what one HTTP request leaves behind on its way
// through the gateway: the response status and byte counts, the route
// template and gRPC method grpc-gateway matched, the gRPC code of the
// outcome, and the innermost request context.
//
// The access log and the HTTP metrics wrap the gateway from outside, so they
// never see the contexts that inner layers derive (grpc-gateway adds the
// route template, an authentication middleware adds the principal). A Call
// lives in the request context from the outermost of them inward; inner
// layers write to it through SetRoute, SetCode, Annotate and Capture, and the
// outer layers read it once the handler has returned.
package httpcall

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Unmatched is the route reported for a request that matched no route. Use
// it instead of the raw path wherever the route becomes a metric label.
const Unmatched = "unmatched"

type ctxKey struct{}

// Call is the record of one HTTP request. It is created by Start and safe
// for concurrent use; its getters are meant to be read after the handler has
// returned.
type Call struct {
	rw   writer
	body body

	bytesIn  atomic.Int64
	bytesOut atomic.Int64

	// mu guards the fields below it.
	mu         sync.Mutex
	status     int
	route      string
	grpcMethod string
	code       codes.Code
	codeSet    bool
	inner      context.Context
}

// Start returns the Call of r, creating one when no outer layer did. A new
// Call wraps w and r.Body to count bytes and capture the status, so the
// caller must pass the returned writer and request on. When r already has a
// Call, w and r come back unchanged and created is false.
func Start(
	w http.ResponseWriter,
	r *http.Request,
) (c *Call, rw http.ResponseWriter, req *http.Request, created bool) {
	return StartContext(r.Context(), w, r)
}

// StartContext is Start with the context of the returned request derived
// from ctx, which must be r's context or derived from it. A middleware that
// adds its own context values passes them here, so the request is copied
// once rather than twice.
func StartContext(
	ctx context.Context,
	w http.ResponseWriter,
	r *http.Request,
) (c *Call, rw http.ResponseWriter, req *http.Request, created bool) {
	if c := FromContext(ctx); c != nil {
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		return c, w, r, false
	}

	c = &Call{}
	c.rw = writer{ResponseWriter: w, call: c}
	r = r.WithContext(context.WithValue(ctx, ctxKey{}, c))
	if r.Body != nil && r.Body != http.NoBody {
		c.body = body{ReadCloser: r.Body, call: c}
		r.Body = &c.body
	}

	return c, &c.rw, r, true
}

// FromContext returns the Call in ctx, or nil when there is none.
func FromContext(ctx context.Context) *Call {
	c, _ := ctx.Value(ctxKey{}).(*Call)

	return c
}

// SetRoute records route as the route template of the request in ctx, if it
// has a Call. Use a template ("/v1/products/{id}"), never the raw path.
func SetRoute(ctx context.Context, route string) {
	if c := FromContext(ctx); c != nil {
		c.mu.Lock()
		c.route = route
		c.mu.Unlock()
	}
}

// SetCode records code as the gRPC outcome of the request in ctx, if it has
// a Call. The gateway's error handlers call it with the code they answer.
func SetCode(ctx context.Context, code codes.Code) {
	if c := FromContext(ctx); c != nil {
		c.mu.Lock()
		c.code, c.codeSet = code, true
		c.mu.Unlock()
	}
}

// Annotate is a grpc-gateway metadata annotator (runtime.WithMetadata) that
// adds no metadata. It records the route template and gRPC method that
// grpc-gateway matched, and keeps ctx as the innermost context, so the
// principal an authentication layer put there can be read by the access log.
func Annotate(ctx context.Context, _ *http.Request) metadata.MD {
	c := FromContext(ctx)
	if c == nil {
		return nil
	}

	route, _ := runtime.HTTPPathPattern(ctx)
	method, _ := runtime.RPCMethod(ctx)

	c.mu.Lock()
	if route != "" {
		c.route = route
	}
	c.grpcMethod = method
	c.inner = ctx
	c.mu.Unlock()

	return nil
}

// Capture records the request it receives as the innermost one unless
// Annotate later finds a deeper one. After next returns, a request that has
// no route yet gets the net/http ServeMux pattern (r.Pattern) that matched
// it, e.g. "GET /healthz". Put it directly around the handler that holds the
// ServeMux.
func Capture(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := FromContext(r.Context())
		if c == nil {
			next.ServeHTTP(w, r)
			return
		}

		c.mu.Lock()
		c.inner = r.Context()
		c.mu.Unlock()

		next.ServeHTTP(w, r)

		c.mu.Lock()
		if c.route == "" {
			c.route = r.Pattern
		}
		c.mu.Unlock()
	})
}

// Route is the recorded route template, or Unmatched.
func (c *Call) Route() string {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.route == "" {
		return Unmatched
	}

	return c.route
}

// GRPCMethod is the full gRPC method grpc-gateway called, or "".
func (c *Call) GRPCMethod() string {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.grpcMethod
}

// Status is the HTTP status sent, 200 when the handler wrote nothing.
func (c *Call) Status() int {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.status == 0 {
		return http.StatusOK
	}

	return c.status
}

// WroteHeader reports whether the response header has been sent.
func (c *Call) WroteHeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.status != 0
}

// Code is the recorded gRPC code, or one inferred from the HTTP status.
// Limitation: when no layer called SetCode, statuses that several codes share
// (400, 409, 500) are reported as the most common of them.
func (c *Call) Code() codes.Code {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.codeSet {
		return c.code
	}

	status := c.status
	if status == 0 {
		status = http.StatusOK
	}

	return CodeFromStatus(status)
}

// Context is the innermost request context recorded by Annotate or Capture,
// or nil when neither ran.
func (c *Call) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.inner
}

// BytesIn is the number of request body bytes the handler read.
func (c *Call) BytesIn() int64 { return c.bytesIn.Load() }

// BytesOut is the number of response body bytes written.
func (c *Call) BytesOut() int64 { return c.bytesOut.Load() }

// CodeFromStatus maps an HTTP status to the gRPC code grpc-gateway most
// often answers with it.
func CodeFromStatus(status int) codes.Code {
	switch {
	case status >= 200 && status < 300:
		return codes.OK
	case status == http.StatusBadRequest:
		return codes.InvalidArgument
	case status == http.StatusUnauthorized:
		return codes.Unauthenticated
	case status == http.StatusForbidden:
		return codes.PermissionDenied
	case status == http.StatusNotFound:
		return codes.NotFound
	case status == http.StatusMethodNotAllowed, status == http.StatusNotImplemented:
		return codes.Unimplemented
	case status == http.StatusConflict:
		return codes.Aborted
	case status == http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case status == 499:
		return codes.Canceled
	case status == http.StatusInternalServerError:
		return codes.Internal
	case status == http.StatusServiceUnavailable:
		return codes.Unavailable
	case status == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	default:
		return codes.Unknown
	}
}

// writer counts response bytes and captures the status. It keeps Flush
// working for grpc-gateway's streaming responses.
type writer struct {
	http.ResponseWriter
	call *Call
}

func (w *writer) WriteHeader(status int) {
	w.call.mu.Lock()
	// 1xx responses are interim; the final status comes later.
	if w.call.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		w.call.status = status
	}
	w.call.mu.Unlock()

	w.ResponseWriter.WriteHeader(status)
}

func (w *writer) Write(p []byte) (int, error) {
	w.call.mu.Lock()
	if w.call.status == 0 {
		w.call.status = http.StatusOK
	}
	w.call.mu.Unlock()

	n, err := w.ResponseWriter.Write(p)
	w.call.bytesOut.Add(int64(n))

	return n, err
}

// Flush implements http.Flusher.
func (w *writer) Flush() {
	_ = w.FlushError()
}

// FlushError sends buffered data to the client and reports a failure;
// http.ResponseController prefers it to Flush. Flushing sends the header,
// so a status not yet written is 200 from here on.
func (w *writer) FlushError() error {
	w.call.mu.Lock()
	if w.call.status == 0 {
		w.call.status = http.StatusOK
	}
	w.call.mu.Unlock()

	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// body counts request body bytes.
type body struct {
	io.ReadCloser
	call *Call
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.call.bytesIn.Add(int64(n))

	return n, err
}
