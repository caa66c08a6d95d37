package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// Method returns the full gRPC method ("/pkg.Service/Method") that r is
// routed to. Inside the mux's middleware it is the route the mux matched;
// in front of the gateway (a rate-limit stage before routing, say) it is
// the route r's HTTP method and path would take, found the same way. It
// reports false when no route takes r.
func (g *Gateway) Method(r *http.Request) (string, bool) {
	rt := g.routes.lookup(r)
	if rt == nil {
		rt = g.routes.match(r.Method, r.URL.Path)
	}
	if rt == nil {
		return "", false
	}

	return rt.rpc, true
}

// Serves reports whether one of the gateway's routes calls fullMethod
// ("/pkg.Service/Method"), or, for "/pkg.Service/*", any method of that
// service. Callers check a configuration keyed by RPC with it, so that a
// misspelt or unrouted name fails at start instead of never applying.
func (g *Gateway) Serves(fullMethod string) bool {
	service, all := strings.CutSuffix(fullMethod, "/*")

	return slices.ContainsFunc(g.routes.all, func(r *route) bool {
		if all {
			return strings.HasPrefix(r.rpc, service+"/")
		}

		return r.rpc == fullMethod
	})
}

// routed is what the mux middleware learn about one request: the route the
// mux matched and its path parameters, found once by labelRoute, and the
// outcome of the auth guard. It travels in the request context, so the
// middleware after labelRoute are built once per route rather than once
// per request, and the route is looked up once.
type routed struct {
	route   *route
	params  map[string]string
	passed  bool  // the auth guard called its next handler
	refusal error // why the auth guard refused, from NoteRefusal
	// refused is the caller of a verified token the guard refused (a 403),
	// from NoteRefusal; nil when no token was verified.
	refused *jwtauth.Principal
}

type routedKey struct{}

// routedFrom returns the request's routed, or nil outside the mux.
func routedFrom(ctx context.Context) *routed {
	st, _ := ctx.Value(routedKey{}).(*routed)
	return st
}

// withRouted returns r with a routed for it, reusing the one labelRoute
// made when there is one.
func (g *Gateway) withRouted(r *http.Request, params map[string]string) (*http.Request, *routed) {
	if st := routedFrom(r.Context()); st != nil {
		return r, st
	}

	st := &routed{route: g.routes.lookup(r), params: params}

	return r.WithContext(context.WithValue(r.Context(), routedKey{}, st)), st
}

// labelRoute looks the matched route up once for the later middleware and
// records its template for the access log and metrics, so requests
// refused before the backend call are labelled too.
//
// grpc-gateway applies its middleware once per registered method and
// pattern, so each closure serves one route: it remembers that route after
// the first look-up, which renders the pattern to a string.
func (g *Gateway) labelRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	var memo atomic.Pointer[route]

	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		rt := memo.Load()
		if rt == nil || rt.method != r.Method {
			if rt = g.routes.lookup(r); rt != nil {
				memo.CompareAndSwap(nil, rt)
			}
		}

		st := &routed{route: rt, params: params}
		r = r.WithContext(context.WithValue(r.Context(), routedKey{}, st))
		if rt != nil {
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

	guarded := g.cfg.Auth.HTTPMiddleware(g.Method)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			st := routedFrom(r.Context())
			st.passed = true
			next(w, r, st.params)
		}))

	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		r, st := g.withRouted(r, params)
		guarded.ServeHTTP(w, r)

		if st.passed {
			return
		}

		// A refused caller whose token was valid is named in the access
		// line and the refusal report: who was denied matters most.
		if st.refused != nil {
			ctx := jwtauth.WithPrincipal(r.Context(), st.refused)
			httpcall.Annotate(ctx, r)
			r = r.WithContext(ctx)
		}
		if g.cfg.OnAuthRefused == nil {
			return
		}

		status, received := http.StatusUnauthorized, r
		if rw, ok := w.(*responseWriter); ok {
			if rw.status != 0 {
				status = rw.status
			}
			if rw.received != nil {
				// The headers as sent, in this request's context.
				received = rw.received.WithContext(r.Context())
			}
		}
		g.cfg.OnAuthRefused(received, status, st.refusal)
	}
}

// NoteRefusal is the auth.WithRefusalHook of the gateway's guard: it keeps
// the detailed reason of a refused request, and the caller when the token
// was valid, so that OnAuthRefused and the access log get them.
// Give it to the guard in Config.Auth, or OnAuthRefused sees a nil error.
func NoteRefusal(ctx context.Context, r auth.Refusal) {
	if st := routedFrom(ctx); st != nil {
		st.refusal, st.refused = r.Err, r.Principal
	}
}

// limitPrincipal applies the per-principal rate limit stage, if any.
func (g *Gateway) limitPrincipal(next runtime.HandlerFunc) runtime.HandlerFunc {
	if g.cfg.PrincipalLimit == nil {
		return next
	}

	limited := g.cfg.PrincipalLimit.Wrap(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			next(w, r, routedFrom(r.Context()).params)
		}))

	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		r, _ = g.withRouted(r, params)
		limited.ServeHTTP(w, r)
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
