package accesslog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
)

// InstanceHeader is the response header in which the gateway passes on the
// backend's x-gatehouse-instance header; HTTP logs it as upstream.
const InstanceHeader = "Grpc-Metadata-X-Gatehouse-Instance"

// internalBody is the JSON google.rpc.Status sent for a recovered panic.
const internalBody = `{"code":13,"message":"internal error","details":[]}` + "\n"

// HTTP is the gateway's access log: a middleware that writes one line per
// HTTP request when the response is complete (for a streaming response, when
// the stream ends). It is safe for concurrent use.
//
// For each request it also settles the request id (requestid.Ensure), and it
// recovers a panic in the handler: the panic is logged with its stack, the
// client gets a 500 JSON status unless the response had already started,
// and the process lives on.
type HTTP struct {
	logger *zap.Logger
	opts   options
}

// NewHTTP returns an HTTP access log writing to logger, named "access".
func NewHTTP(logger *zap.Logger, opts ...Option) (*HTTP, error) {
	if logger == nil {
		return nil, ErrNilLogger
	}

	return &HTTP{logger: accessLogger(logger), opts: newOptions(opts)}, nil
}

// Middleware returns next wrapped with the access log. Put it inside the
// OpenTelemetry middleware, so the line carries the trace id, and outside
// everything that can refuse a request, so refusals are logged too.
func (h *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.opts.skip != nil && h.opts.skip(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}

		start := h.opts.now()
		ctx, _ := requestid.EnsureContext(w, r)
		call, w, r, _ := httpcall.StartContext(ctx, w, r)

		defer func() {
			p := recover()
			answered := p != nil && h.recovered(w, r, call, p)

			h.write(r, w.Header(), call, start, p != nil && !isAbort(p))

			if p != nil && !answered {
				// The response had started, or the handler asked for an
				// abort: end the connection the way net/http does.
				panic(http.ErrAbortHandler)
			}
		}()

		next.ServeHTTP(w, r)
	})
}

// recovered logs a panic and answers 500 if the response has not started.
// It reports whether it answered.
func (h *HTTP) recovered(
	w http.ResponseWriter,
	r *http.Request,
	call *httpcall.Call,
	p any,
) bool {
	if isAbort(p) {
		return false
	}

	traceID, spanID, _ := traceFields(r.Context())
	h.logger.Error("panic in handler",
		zap.String("request_id", requestid.FromContext(r.Context())),
		traceID, spanID,
		zap.String("http_method", r.Method),
		zap.String("path", safePath(r.URL.Path)),
		zap.String("panic", truncate(fmt.Sprint(p), maxPanic)),
		zap.Stack("stack"),
	)

	if call.WroteHeader() {
		return false
	}

	httpcall.SetCode(r.Context(), codes.Internal)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(internalBody))

	return true
}

func (h *HTTP) write(
	r *http.Request,
	header http.Header,
	call *httpcall.Call,
	start time.Time,
	panicked bool,
) {
	status := call.Status()
	level := zapcore.InfoLevel
	if status >= http.StatusInternalServerError {
		level = zapcore.WarnLevel
	}

	ce := h.logger.Check(level, "http request")
	if ce == nil {
		return
	}

	buf := getFields()
	fields := append(buf.f, zap.String("request_id", requestid.FromContext(r.Context())))
	if traceID, spanID, ok := traceFields(r.Context()); ok {
		fields = append(fields, traceID, spanID)
	}
	fields = append(fields,
		zap.String("client_ip", h.opts.clientIP(r)),
		zap.String("http_method", r.Method),
		zap.String("route", call.Route()),
		zap.String("path", safePath(r.URL.Path)),
		zap.Int("status", status),
		zap.String("grpc_code", call.Code().String()),
		latencyMS(h.opts.now().Sub(start)),
		zap.Int64("bytes_in", call.BytesIn()),
		zap.Int64("bytes_out", call.BytesOut()),
		zap.String("user_agent", truncate(r.UserAgent(), maxUserAgent)),
	)
	if m := call.GRPCMethod(); m != "" {
		fields = append(fields, zap.String("grpc_method", m))
	}
	if h.opts.principal != nil {
		fields = append(fields, zap.String("principal", h.opts.principal(innerContext(r, call))))
	}
	if up := header.Get(InstanceHeader); up != "" {
		fields = append(fields, zap.String("upstream", up))
	}
	if panicked {
		fields = append(fields, zap.Bool("panic", true))
	}

	ce.Write(fields...)
	buf.put(fields)
}

// isAbort reports whether p is the http.ErrAbortHandler sentinel, with which
// a handler asks to end the connection without a panic being logged.
func isAbort(p any) bool {
	err, ok := p.(error)

	return ok && errors.Is(err, http.ErrAbortHandler)
}

func innerContext(r *http.Request, call *httpcall.Call) context.Context {
	if ctx := call.Context(); ctx != nil {
		return ctx
	}

	return r.Context()
}
