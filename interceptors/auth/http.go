package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/grpc/codes"
)

// MethodResolver returns the gRPC full method ("/pkg.Service/Method") that
// will serve r, and false when r matches no route.
type MethodResolver func(r *http.Request) (fullMethod string, ok bool)

// WithUnmatchedHandler sets what the HTTP middleware does with a request
// its resolver matches to no method. By default it answers 404 with a JSON
// status; pass the wrapped handler itself when that handler calls no
// backend for unknown routes (a grpc-gateway mux answers 404 or 405).
func WithUnmatchedHandler(h http.Handler) Option {
	return func(o *options) { o.unmatched = h }
}

// HTTPMiddleware returns the gateway-side guard: for every request it
// strips client-supplied identity headers, resolves the gRPC method,
// checks the token and the method's rule, and calls next only when the
// call is allowed, with the Principal in the request context and the
// Authorization header rewritten as "Bearer <token>" for the backend.
// A refusal is answered here, so no backend is called: the status of the
// RFC 6750 challenge, a WWW-Authenticate header, and the JSON status body
// the gateway uses elsewhere ({"code":16,"message":"…","details":[]}).
func (g *Guard) HTTPMiddleware(resolve MethodResolver) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		unmatched := g.opts.unmatched
		if unmatched == nil {
			unmatched = http.HandlerFunc(notFound)
		}

		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = g.stripHeaders(r)

			method, ok := resolve(r)
			if !ok {
				unmatched.ServeHTTP(w, r)
				return
			}

			// The token is read once, for the check and for the backend.
			token, tokenErr := jwtauth.BearerToken(r)
			p, err := g.checkHTTP(r, method, token, tokenErr)
			if err != nil {
				g.refused(r.Context(), "http", method, p, err)
				g.writeRefusal(w, refusal(err))
				return
			}

			if p != nil {
				r = r.WithContext(jwtauth.WithPrincipal(r.Context(), p))
			}
			if tokenErr == nil {
				r = withBearer(r, token)
			}

			next.ServeHTTP(w, r)
		})
	}
}

// CheckHTTP is Check for an HTTP request: it also refuses a token passed
// in the query string (jwtauth.ErrTokenInQuery), on every method.
func (g *Guard) CheckHTTP(r *http.Request, fullMethod string) (*jwtauth.Principal, error) {
	token, err := jwtauth.BearerToken(r)

	return g.checkHTTP(r, fullMethod, token, err)
}

// checkHTTP is CheckHTTP with the result of jwtauth.BearerToken for r.
func (g *Guard) checkHTTP(
	r *http.Request,
	fullMethod, token string,
	tokenErr error,
) (*jwtauth.Principal, error) {
	if errors.Is(tokenErr, jwtauth.ErrTokenInQuery) {
		return nil, tokenErr
	}

	return g.check(r.Context(), fullMethod, len(r.Header.Values("Authorization")) > 0,
		token, tokenErr)
}

// stripHeaders returns r when it has no header matching a stripped prefix,
// else a copy without them; r itself is left untouched.
func (g *Guard) stripHeaders(r *http.Request) *http.Request {
	// Most requests carry none of these headers: look first, and copy the
	// request only when one has to go, so the caller's is never changed.
	var r2 *http.Request
	for name := range r.Header {
		if !g.stripped(name) {
			continue
		}
		if r2 == nil {
			r2 = r.Clone(r.Context())
		}
		delete(r2.Header, name)
	}

	if r2 == nil {
		return r
	}

	return r2
}

// stripped reports whether a header of this name is removed from requests.
func (g *Guard) stripped(name string) bool {
	for _, prefix := range g.opts.strip {
		if len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			return true
		}
	}

	return false
}

// withBearer returns r with exactly one Authorization header,
// "Bearer <token>", for the backend. Usually the client sent just that,
// and r is returned as it is; otherwise a copy with new headers is.
func withBearer(r *http.Request, token string) *http.Request {
	const scheme = "Bearer "
	if v := r.Header.Values("Authorization"); len(v) == 1 &&
		len(v[0]) == len(scheme)+len(token) &&
		strings.HasPrefix(v[0], scheme) && v[0][len(scheme):] == token {
		return r
	}

	r2 := r.WithContext(r.Context())
	r2.Header = r.Header.Clone()
	r2.Header.Set("Authorization", scheme+token)

	return r2
}

// statusBody is the JSON form of a google.rpc.Status, as the gateway's
// error handler writes it.
type statusBody struct {
	Code    codes.Code `json:"code"`
	Message string     `json:"message"`
	Details []struct{} `json:"details"`
}

func (g *Guard) writeRefusal(w http.ResponseWriter, c jwtauth.Challenge) {
	if h := c.Header(g.opts.realm); h != "" {
		w.Header().Set("WWW-Authenticate", h)
	}
	writeStatus(w, c.Status, codeFor(c.Status), c.Description)
}

// codeFor is the gRPC code grpc-gateway maps to the HTTP status.
func codeFor(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}

	return codes.Unauthenticated
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeStatus(w, http.StatusNotFound, codes.NotFound, http.StatusText(http.StatusNotFound))
}

func writeStatus(w http.ResponseWriter, httpStatus int, code codes.Code, msg string) {
	body, err := json.Marshal(statusBody{Code: code, Message: msg, Details: []struct{}{}})
	if err != nil {
		// A struct of an int and a string always marshals.
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(body, '\n'))
}
