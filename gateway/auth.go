package gateway

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// Method returns the full gRPC method ("/pkg.Service/Method") the mux
// matched for r. It works inside the mux's middleware, where the matched
// pattern is in the request context; elsewhere it reports false.
func (g *Gateway) Method(r *http.Request) (string, bool) {
	rt := g.routes.lookup(r)
	if rt == nil {
		return "", false
	}

	return rt.rpc, true
}

// labelRoute records the matched route template for the access log and
// metrics, so requests refused before the backend call are labelled too.
func (g *Gateway) labelRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if rt := g.routes.lookup(r); rt != nil {
			httpcall.SetRoute(r.Context(), rt.template)
		}
		next(w, r, params)
	}
}

// authenticate runs the auth guard for the matched route. A refused request
// is answered by the guard (401, 400 or 403 with a WWW-Authenticate
// challenge) and reported to OnAuthRefused; an allowed one goes on with
// the principal in its context.
func (g *Gateway) authenticate(next runtime.HandlerFunc) runtime.HandlerFunc {
	if g.cfg.Auth == nil {
		return next
	}

	guard := g.cfg.Auth.HTTPMiddleware(g.Method)

	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		passed := false
		box := &refusalBox{}
		h := guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			passed = true
			next(w, r, params)
		}))
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), refusalKey{}, box)))

		if passed || g.cfg.OnAuthRefused == nil {
			return
		}

		status := http.StatusUnauthorized
		if rw, ok := w.(*responseWriter); ok && rw.status != 0 {
			status = rw.status
		}
		g.cfg.OnAuthRefused(r, status, box.err)
	}
}

type refusalKey struct{}

// refusalBox carries the reason of a refusal from the guard's hook back to
// authenticate, which alone knows the request.
type refusalBox struct{ err error }

// NoteRefusal is the auth.WithRefusalHook of the gateway's guard: it keeps
// the detailed reason of a refused request so that OnAuthRefused gets it.
// Give it to the guard in Config.Auth, or OnAuthRefused sees a nil error.
func NoteRefusal(ctx context.Context, r auth.Refusal) {
	if box, ok := ctx.Value(refusalKey{}).(*refusalBox); ok {
		box.err = r.Err
	}
}

// limitPrincipal applies the per-principal rate limit stage, if any.
func (g *Gateway) limitPrincipal(next runtime.HandlerFunc) runtime.HandlerFunc {
	if g.cfg.PrincipalLimit == nil {
		return next
	}

	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		h := g.cfg.PrincipalLimit.Wrap(http.HandlerFunc(
			func(w http.ResponseWriter, r *http.Request) { next(w, r, params) }))
		h.ServeHTTP(w, r)
	}
}

// PrincipalLimitKey is the httplimit.PrincipalFunc of the gateway's
// per-principal rate limit: requests are keyed by the token's subject (or
// client id) and classed by its "plan" claim. Anonymous requests (public
// routes without a token) are left to the per-IP stage.
func PrincipalLimitKey(r *http.Request) (key, class string, ok bool) {
	p, ok := jwtauth.PrincipalFrom(r.Context())
	if !ok || p == nil {
		return "", "", false
	}

	key = "sub:" + p.Subject
	if p.Subject == "" {
		key = "client:" + p.ClientID
	}
	class, _ = p.Claims["plan"].(string)

	return key, class, true
}
