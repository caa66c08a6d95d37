package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// writeError answers r with the JSON status {code, message, details} under
// httpStatus, through the same handler as every other error.
func (g *Gateway) writeError(
	w http.ResponseWriter,
	r *http.Request,
	httpStatus int,
	code codes.Code,
	msg string,
) {
	err := &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: status.Error(code, msg)}
	runtime.HTTPError(r.Context(), g.mux, g.outbound(r), w, r, err)
}

// outbound is the marshaler responses to r are written with.
func (g *Gateway) outbound(r *http.Request) runtime.Marshaler {
	_, out := runtime.MarshalerForRequest(g.mux, r)
	return out
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
		httpcall.SetCode(r.Context(), status.Code(httpErr.Err))
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		return
	}

	safe := g.safeStatus(r.Method, r.URL.Path, err)
	httpcall.SetCode(r.Context(), status.Code(safe))
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, safe)
}

func (g *Gateway) streamError(ctx context.Context, err error) *status.Status {
	method, _ := runtime.RPCMethod(ctx)
	st := status.Convert(g.safeStatus("stream", method, err))
	httpcall.SetCode(ctx, st.Code())

	return st
}

// safeStatus keeps codes and messages that describe the caller's request and
// replaces those that could describe our infrastructure. Debug details (a
// backend's stack trace, say) never leave the gateway.
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
	case codes.Canceled:
		g.logger.Debug("call canceled", zap.String("method", method), zap.String("path", path))
		return withoutDebugInfo(st).Err()
	default:
		return withoutDebugInfo(st).Err()
	}

	g.logger.Warn("backend call failed", zap.String("method", method),
		zap.String("path", path), zap.Stringer("code", st.Code()),
		zap.String("detail", st.Message()))

	return status.Error(st.Code(), msg)
}

// withoutDebugInfo returns st without google.rpc.DebugInfo details.
func withoutDebugInfo(st *status.Status) *status.Status {
	p := st.Proto()

	kept := make([]*anypb.Any, 0, len(p.GetDetails()))
	for _, d := range p.GetDetails() {
		if !d.MessageIs(&errdetails.DebugInfo{}) {
			kept = append(kept, d)
		}
	}
	if len(kept) == len(p.GetDetails()) {
		return st
	}

	p.Details = kept
	return status.FromProto(p)
}

// handleRoutingError answers unknown routes with 404 and known routes called
// with another HTTP method with 405 and an Allow header, both as JSON
// statuses.
func (g *Gateway) handleRoutingError(
	ctx context.Context,
	mux *runtime.ServeMux,
	m runtime.Marshaler,
	w http.ResponseWriter,
	r *http.Request,
	httpStatus int,
) {
	code, msg := codes.InvalidArgument, "request target is not a path"
	switch httpStatus {
	case http.StatusNotFound:
		code, msg = codes.NotFound, "no route matches this path"
	case http.StatusMethodNotAllowed:
		code, msg = codes.Unimplemented, "method "+r.Method+" is not allowed here (see Allow)"
		if w.Header().Get("Allow") == "" {
			w.Header().Set("Allow", strings.Join(g.routes.allowed(r.URL.Path), ", "))
		}
		// The path is a known route's: label the request with it, a
		// bounded value, rather than leave it unmatched.
		if tpl := g.routes.template(r.URL.Path); tpl != "" {
			httpcall.SetRoute(r.Context(), tpl)
		}
	}

	httpcall.SetCode(r.Context(), code)
	err := &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: status.Error(code, msg)}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
