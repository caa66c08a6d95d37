package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// admit runs the checks that need no route: the size of the request line
// and headers, and the encoding of the URL. It answers a refused request
// itself and reports whether the request may go on, and as what: admitted
// requests lose the headers only the edge may set, in a copy when they had
// any, so r itself is left as the client sent it.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if n := headerBytes(r); n > g.cfg.MaxHeaderBytes {
		g.logger.Debug("request refused: headers too large",
			zap.Int("bytes", n), zap.Int("limit", g.cfg.MaxHeaderBytes))
		g.writeError(w, r, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted,
			fmt.Sprintf("request line and headers exceed %d bytes", g.cfg.MaxHeaderBytes))
		return r, false
	}

	if msg := checkURL(r.URL); msg != "" {
		g.logger.Debug("request refused: bad URL", zap.String("reason", msg))
		g.writeError(w, r, http.StatusBadRequest, codes.InvalidArgument, msg)
		return r, false
	}

	return g.headers.strip(r), true
}

// headerBytes approximates what the request line and headers took on the
// wire: each header line is its name, ": ", the value and CRLF.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2

	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}

	return n
}

// checkURL returns why u cannot be routed, or "". Path parameters and
// query values become protobuf strings, which must be valid UTF-8; left
// unchecked, they fail only when the gRPC client marshals the request, as
// an internal error.
//
// An encoded slash (%2F) is refused too, and so are dot segments (see
// hasDotSegment): grpc-gateway routes on the decoded path, where %2F is a
// separator, while net/http's pattern matching (which the rate-limit
// stages' per-route rules use) keeps it inside a segment. Both views of
// one request must name the same route, or a client could spell a path
// so that a per-route limit does not apply to it. No route of ours takes
// a slash inside a parameter.
func checkURL(u *url.URL) string {
	if strings.Contains(u.RawPath, "%2F") || strings.Contains(u.RawPath, "%2f") {
		return "request path has an encoded slash (%2F); path segments must be " +
			"separated by a plain /"
	}
	if hasDotSegment(u.Path) {
		return "request path has a . or .. segment; send the path without them"
	}
	if !utf8.ValidString(u.Path) {
		return "request path is not valid UTF-8 once percent-decoded"
	}

	values, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "query string is malformed: " + queryError(err)
	}
	for k, vs := range values {
		if !utf8.ValidString(k) {
			return "query parameter name is not valid UTF-8 once percent-decoded"
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return fmt.Sprintf("query parameter %q is not valid UTF-8 once percent-decoded", k)
			}
		}
	}

	return ""
}

// hasDotSegment reports whether the decoded path has a "." or ".."
// segment. net/http's pattern matching (the rate-limit stages' per-route
// rules) cleans those away, while grpc-gateway takes them as segments,
// "/v1/products/." as GetProduct with the id "."; like an encoded slash,
// they would let the two disagree on the route.
func hasDotSegment(path string) bool {
	if !strings.Contains(path, "/.") {
		return false
	}

	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}

	return false
}

// queryError describes a query parsing error without echoing the input.
func queryError(err error) string {
	var escErr url.EscapeError
	if errors.As(err, &escErr) {
		return "invalid percent-encoding"
	}

	return "cannot be parsed"
}

// recoverPanic turns a panic in the request's goroutine into a 500 with a
// log entry. Deferred first in ServeHTTP, it covers everything the request
// runs: routing, the route limits, the gRPC client and its interceptors.
//
// Limitation: a panic in a goroutine the request started (none do today)
// is not covered and still ends the process.
func (g *Gateway) recoverPanic(w *responseWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(p) // net/http's own signal to drop the connection quietly
	}

	g.logger.Error("panic while serving a request",
		zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.Any("panic", p), zap.StackSkip("stack", 1))

	if w.wroteHeader {
		// The status line is gone; cut the connection so the client sees a
		// broken response rather than one that looks complete.
		panic(http.ErrAbortHandler)
	}

	g.writeError(w, r, http.StatusInternalServerError, codes.Internal, "internal error")
}

// responseWriter remembers whether the response has started, so a panic
// can still be answered with a 500, and on streaming routes renews the
// write deadline before each write so a client that stops reading is cut
// off. It is used by the request's goroutine only.
type responseWriter struct {
	http.ResponseWriter

	// received is the request as the gateway received it, before admit
	// removed headers, for OnAuthRefused.
	received *http.Request

	wroteHeader bool
	// status is the HTTP status written, 0 before WriteHeader.
	status int
	// writeIdle, when positive, is the longest a single write may take.
	writeIdle time.Duration
}

// WriteHeader implements http.ResponseWriter.
func (w *responseWriter) WriteHeader(code int) {
	if code >= http.StatusOK {
		w.wroteHeader = true
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *responseWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	w.renewWriteDeadline()

	return w.ResponseWriter.Write(p)
}

// FlushError flushes buffered data to the client; http.ResponseController
// calls it.
func (w *responseWriter) FlushError() error {
	w.renewWriteDeadline()

	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for callers that do not use a
// ResponseController.
func (w *responseWriter) Flush() {
	_ = w.FlushError()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *responseWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

func (w *responseWriter) renewWriteDeadline() {
	if w.writeIdle <= 0 {
		return
	}

	rc := http.NewResponseController(w.ResponseWriter)
	_ = rc.SetWriteDeadline(time.Now().Add(w.writeIdle))
}
