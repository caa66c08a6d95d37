package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// writeGrace is how long a unary response may take to write once the
// call's deadline has passed, so even a 504 reaches a client that reads.
const writeGrace = 10 * time.Second

// timeoutHeader is the header a client sets to ask for a shorter (or, up
// to the route's maximum, longer) deadline, in gRPC's own format.
const timeoutHeader = "Grpc-Timeout"

// limitRoute is the mux middleware that applies the matched route's
// limits before its handler runs: Content-Type, body size, and the call's
// deadline. It runs after routing, so a wrong path or method is a 404 or
// 405 before any of these is looked at.
func (g *Gateway) limitRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		rt := g.routes.lookup(r)
		if rt == nil {
			// The mux matched a pattern the route table does not know,
			// which is a bug here; without limits the request cannot go on.
			pat, _ := runtime.HTTPPattern(r.Context())
			g.logger.Error("no limits for a matched route",
				zap.String("method", r.Method), zap.Stringer("pattern", pat))
			g.writeError(w, r, http.StatusInternalServerError, codes.Internal, "internal error")
			return
		}

		if !g.checkContentType(w, r, rt) || !g.readBody(w, r, rt) {
			return
		}

		timeout, ok := g.callTimeout(w, r, rt)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()

		rw, _ := w.(*responseWriter)
		if rt.stream && rw != nil {
			rw.writeIdle = g.cfg.StreamWriteTimeout
			// net/http writes the last chunk after the handler returns.
			defer rw.renewWriteDeadline()
		} else {
			rc := http.NewResponseController(w)
			_ = rc.SetWriteDeadline(time.Now().Add(timeout + writeGrace))
		}

		next(w, r.WithContext(ctx), params)
	}
}

// checkContentType answers 415 unless a route that takes a body gets
// uncompressed JSON (parameters other than charset=utf-8 are ignored). An
// empty body needs no type; routes without a body ignore the header.
func (g *Gateway) checkContentType(w http.ResponseWriter, r *http.Request, rt *route) bool {
	if !rt.body || r.ContentLength == 0 {
		return true
	}

	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		g.logger.Debug("request refused: content encoding",
			zap.String("route", rt.template), zap.String("content_encoding", enc))
		g.writeError(w, r, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			"Content-Encoding is not supported; send the body uncompressed")
		return false
	}

	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	charset, hasCharset := params["charset"]
	if err == nil && mediaType == "application/json" &&
		(!hasCharset || strings.EqualFold(charset, "utf-8")) {
		return true
	}

	g.logger.Debug("request refused: content type",
		zap.String("route", rt.template), zap.String("content_type", r.Header.Get("Content-Type")))
	g.writeError(w, r, http.StatusUnsupportedMediaType, codes.InvalidArgument,
		"Content-Type must be application/json (charset utf-8, if given)")

	return false
}

// readBody reads the whole body, at most the route's limit, so the
// handler decodes it from memory and the call never waits on the client.
// A declared length past the limit is refused with 413 before a byte is
// read; a chunked body is cut off at the first byte past it. Either way
// the connection closes after the answer, so the rest is never read.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, rt *route) bool {
	if r.ContentLength > rt.maxBody {
		g.refuseBody(w, r, rt)
		return false
	}

	// net/http gives a request without a body (most GETs) http.NoBody:
	// nothing to read or to bound.
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}

	// http.MaxBytesReader can tell net/http to close the connection only
	// through net/http's own writer, which the layers outside have wrapped;
	// refuseBody asks for the close with a Connection header instead.
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		var netErr net.Error
		switch {
		case errors.As(err, &tooLarge):
			g.refuseBody(w, r, rt)
		case errors.As(err, &netErr) && netErr.Timeout():
			g.logger.Debug("request refused: body too slow", zap.String("route", rt.template))
			w.Header().Set("Connection", "close")
			g.writeError(w, r, http.StatusRequestTimeout, codes.DeadlineExceeded,
				"request body was not received in time")
		default:
			g.logger.Debug("request refused: body unreadable",
				zap.String("route", rt.template), zap.Error(err))
			w.Header().Set("Connection", "close")
			g.writeError(w, r, http.StatusBadRequest, codes.InvalidArgument,
				"request body could not be read")
		}
		return false
	}
	// Reading to the end also lifts ReadTimeout: net/http clears the read
	// deadline once the body is consumed, so a call may outlive it.
	r.Body = io.NopCloser(bytes.NewReader(data))

	return true
}

func (g *Gateway) refuseBody(w http.ResponseWriter, r *http.Request, rt *route) {
	g.logger.Debug("request refused: body too large", zap.String("route", rt.template),
		zap.Int64("content_length", r.ContentLength), zap.Int64("limit", rt.maxBody))

	// The rest of the body is never read: the connection cannot be reused.
	w.Header().Set("Connection", "close")

	msg := "this route takes no request body"
	if rt.maxBody > 0 {
		msg = fmt.Sprintf("request body exceeds %d bytes", rt.maxBody)
	}
	g.writeError(w, r, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, msg)
}

// callTimeout returns the call's timeout: the client's Grpc-Timeout when
// present and well formed, capped at the route's maximum, or else the
// route's default. A malformed header is answered with 400.
func (g *Gateway) callTimeout(w http.ResponseWriter, r *http.Request, rt *route) (
	time.Duration, bool,
) {
	values := r.Header.Values(timeoutHeader)
	// Consumed here; grpc-gateway would otherwise apply it a second time.
	r.Header.Del(timeoutHeader)

	if len(values) == 0 {
		return rt.timeout, true
	}

	d, err := parseTimeout(values)
	if err != nil {
		g.logger.Debug("request refused: timeout header", zap.Error(err))
		g.writeError(w, r, http.StatusBadRequest, codes.InvalidArgument,
			"Grpc-Timeout must be one value of 1 to 8 digits and a unit (H, M, S, m, u, n), "+
				"greater than zero")
		return 0, false
	}

	return min(d, rt.maxTimeout), true
}

// parseTimeout reads a gRPC timeout ("TimeoutValue TimeoutUnit", at most
// eight digits) from the values of a Grpc-Timeout header.
func parseTimeout(values []string) (time.Duration, error) {
	if len(values) != 1 {
		return 0, fmt.Errorf("%d %s headers", len(values), timeoutHeader)
	}

	v := values[0]
	if len(v) < 2 || len(v) > 9 {
		return 0, fmt.Errorf("%s of %d characters", timeoutHeader, len(v))
	}

	units := map[byte]time.Duration{
		'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond,
	}
	unit, ok := units[v[len(v)-1]]
	if !ok {
		return 0, fmt.Errorf("%s unit %q", timeoutHeader, v[len(v)-1])
	}

	digits := v[:len(v)-1]
	if strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%s value %q is not decimal digits", timeoutHeader, digits)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s value %q is not positive", timeoutHeader, digits)
	}

	// Eight digits of hours overflow a Duration; anything that long is
	// capped by the route's maximum anyway.
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, nil
	}

	return time.Duration(n) * unit, nil
}
