// Package accesslog writes one structured log line per gRPC call (Server, a
// grpc stats.Handler) and per HTTP request (HTTP, a middleware for the
// gateway): who called what, from where, with what result, how fast, and
// under which request id and trace id.
//
// Lines are built from a fixed set of fields only. Request headers, cookies,
// query strings, message bodies and metadata values are never logged, so
// tokens and key material cannot reach the log through this package.
//
// Field names are the same in both kinds of line where they mean the same
// thing: request_id, trace_id, span_id, grpc_method, grpc_code, latency_ms,
// bytes_in, bytes_out, principal.
package accesslog

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// ErrNilLogger is returned by the constructors when the logger is nil.
var ErrNilLogger = errors.New("accesslog: logger is nil")

// maxUserAgent bounds the user agent kept in a line; longer ones are cut.
const maxUserAgent = 256

// maxPanic bounds the text of a recovered panic value kept in a line.
const maxPanic = 1024

// maxText bounds the path and the gRPC status message kept in a line.
const maxText = 512

// Option configures a Server or an HTTP access log. Options that do not apply
// to one of them are ignored by it.
type Option func(*options)

type options struct {
	principal func(context.Context) string
	caller    func(context.Context) string
	clientIP  func(*http.Request) string
	instance  string
	skip      func(name string) bool
	now       func() time.Time
}

func newOptions(opts []Option) options {
	o := options{clientIP: RemoteIP, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}

	return o
}

// WithPrincipal sets the function that names the authenticated end user or
// client (subject or client id) from the innermost context of a call. Without
// it lines carry no principal field.
func WithPrincipal(fn func(context.Context) string) Option {
	return func(o *options) { o.principal = fn }
}

// WithCaller sets the function that names the calling service (for example
// the identity in its mTLS certificate) from the context of a call. Used by
// Server only; without it lines carry no caller field.
func WithCaller(fn func(context.Context) string) Option {
	return func(o *options) { o.caller = fn }
}

// WithClientIP sets how HTTP finds the client address of a request. The
// default, RemoteIP, uses the TCP peer; behind a trusted proxy pass a
// function that reads the proxy's header instead. Used by HTTP only.
func WithClientIP(fn func(*http.Request) string) Option {
	return func(o *options) {
		if fn != nil {
			o.clientIP = fn
		}
	}
}

// WithInstance sets the instance id that Server lines carry as instance, so
// a line names the replica that served it.
func WithInstance(id string) Option {
	return func(o *options) { o.instance = id }
}

// WithSkip sets a filter: calls for which it returns true get no line. Server
// passes the full gRPC method ("/grpc.health.v1.Health/Check"), HTTP the URL
// path. Use it for health checks that would drown everything else. Skipped
// calls get no request id from this package either.
func WithSkip(fn func(name string) bool) Option {
	return func(o *options) { o.skip = fn }
}

// WithClock sets the clock that times calls; tests use it to fix latency.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// RemoteIP returns the IP address of the TCP peer of r, without the port.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}

	return host
}

// accessLogger is logger named "access", without the caller field: every
// line would name the same line of this package, and finding it costs a
// stack walk per request.
func accessLogger(logger *zap.Logger) *zap.Logger {
	return logger.Named("access").WithOptions(zap.WithCaller(false))
}

// fieldBuf is a reusable slice of fields for one line. A line has up to 20
// fields of 64 bytes each; reusing the slice saves allocating them per call.
type fieldBuf struct{ f []zap.Field }

var fieldPool = sync.Pool{New: func() any { return &fieldBuf{f: make([]zap.Field, 0, 20)} }}

func getFields() *fieldBuf { return fieldPool.Get().(*fieldBuf) }

// put returns the buffer to the pool, keeping fields' backing array if it
// grew. Limitation: this relies on zap cores not keeping the field slice
// after Write, which holds for zap's own cores (they encode or copy at once)
// but not necessarily for a custom core.
func (b *fieldBuf) put(fields []zap.Field) {
	clear(fields)
	b.f = fields[:0]
	fieldPool.Put(b)
}

// traceFields returns the trace and span id of the span in ctx, if any.
func traceFields(ctx context.Context) (zap.Field, zap.Field, bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return zap.Skip(), zap.Skip(), false
	}

	return zap.String("trace_id", sc.TraceID().String()),
		zap.String("span_id", sc.SpanID().String()), true
}

// latencyMS is d in milliseconds with microsecond resolution.
func latencyMS(d time.Duration) zap.Field {
	return zap.Float64("latency_ms", float64(d.Microseconds())/1000)
}

// serverFault reports whether code says the server, not the caller, failed.
func serverFault(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.Internal, codes.DataLoss, codes.Unavailable,
		codes.DeadlineExceeded:
		return true
	default:
		return false
	}
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}

	return s
}

// safePath is the request path as logged: each segment that looks like a
// credential (a JWT, or any run of 40 or more base64url characters, as
// access keys and session tokens are) is replaced by "[redacted]", then the
// whole is truncated. A client that puts a token in the path must not get
// it into the logs.
func safePath(p string) string {
	// Nearly every path is clean: check it segment by segment first, and
	// split and rebuild it only when something must go.
	clean := true
	for rest := p; clean && rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		clean = !looksSecret(seg)
	}
	if clean {
		return truncate(p, maxText)
	}

	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if looksSecret(seg) {
			segs[i] = "[redacted]"
		}
	}

	return truncate(strings.Join(segs, "/"), maxText)
}

func looksSecret(seg string) bool {
	if strings.HasPrefix(seg, "eyJ") && strings.Count(seg, ".") >= 1 {
		return true
	}

	run := 0
	for _, c := range seg {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '+', c == '=':
			run++
			if run >= 40 {
				return true
			}
		default:
			run = 0
		}
	}

	return false
}
