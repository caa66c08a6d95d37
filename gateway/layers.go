package gateway

import (
	"net/http"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/gatehouse-dev/gatehouse/tracing"
)

// Layers are the HTTP middlewares that wrap the whole gateway, before any
// route is matched. Every field is optional; a nil one is skipped.
type Layers struct {
	// Tracing starts a span per request from the client's traceparent.
	Tracing *tracing.Tracing
	// Metrics counts requests and their latency by route and status.
	Metrics *metrics.HTTP
	// AccessLog writes one line per request and settles its request id.
	AccessLog *accesslog.HTTP
	// Abuse refuses clients that failed authentication too often.
	Abuse *securityevent.AbuseGuard
	// PerIP limits each client address before any token is verified, so
	// spraying tokens costs little.
	PerIP *httplimit.Stage
}

// Wrap returns h behind the layers. Order, first = outermost: tracing (so
// every later line carries the trace id), metrics (which see every status,
// 500s included), access log (request id, one line, panic backstop), abuse
// guard, per-IP rate limit; then the gateway itself authenticates, limits
// per principal and checks the route.
//
// When h is a *Gateway (anything with its RouteTemplate method), a request
// the abuse guard or the per-IP limit refused, before the gateway matched
// a route, is labelled with its path's route template for the metrics and
// the access log.
func (l Layers) Wrap(h http.Handler) http.Handler {
	routes, _ := h.(routeTemplater)

	if l.PerIP != nil {
		h = l.PerIP.Wrap(h)
	}
	if l.Abuse != nil {
		h = l.Abuse.Middleware(h)
	}
	if routes != nil && (l.PerIP != nil || l.Abuse != nil) {
		h = labelUnrouted(routes, h)
	}
	if l.AccessLog != nil {
		h = l.AccessLog.Middleware(h)
	}
	if l.Metrics != nil {
		h = l.Metrics.Middleware(h)
	}
	if l.Tracing != nil {
		h = l.Tracing.Middleware(h)
	}

	return h
}

// routeTemplater names the route template a path belongs to, or "".
type routeTemplater interface {
	RouteTemplate(path string) string
}

// labelUnrouted labels, after next has answered, a request that no route
// labelled: one refused in front of the gateway, or by its checks that
// run before the mux. The look-up runs only for such requests; a path no
// route serves stays unmatched.
func labelUnrouted(routes routeTemplater, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)

		call := httpcall.FromContext(r.Context())
		if call == nil || call.Route() != httpcall.Unmatched {
			return
		}
		if tpl := routes.RouteTemplate(r.URL.Path); tpl != "" {
			httpcall.SetRoute(r.Context(), tpl)
		}
	})
}
