package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/prometheus/client_golang/prometheus"
)

// HTTP counts the gateway's requests and times them, by method, route
// template and status code:
//
//	gatehouse_http_requests_total{method,route,code}
//	gatehouse_http_request_duration_seconds{method,route,code}
//
// It is safe for concurrent use.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	now      func() time.Time
}

// NewHTTP returns HTTP metrics registered with reg.
func NewHTTP(reg prometheus.Registerer, opts ...Option) (*HTTP, error) {
	o := newOptions(opts)
	labels := []string{"method", "route", "code"}

	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total",
			Help: "HTTP requests by method, route template and status code.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "HTTP request latency by method, route template and status code.",
			Buckets: o.buckets,
		}, labels),
		now: o.now,
	}
	if err := register(reg, m.requests, m.duration); err != nil {
		return nil, err
	}

	return m, nil
}

// Middleware returns next wrapped with the metrics. The route label is the
// template recorded through package httpcall (httpcall.Annotate for
// grpc-gateway routes, httpcall.Capture for the others), or "unmatched"; a
// raw path never becomes a label. Put it outside the access log, which
// answers panics with 500, so those are counted too.
//
// Limitation: a panic that nothing inside recovers is not counted.
func (m *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := m.now()
		call, w, r, _ := httpcall.Start(w, r)

		next.ServeHTTP(w, r)

		method := methodLabel(r.Method)
		route := call.Route()
		code := statusLabel(call.Status())
		m.requests.WithLabelValues(method, route, code).Inc()
		m.duration.WithLabelValues(method, route, code).Observe(m.now().Sub(start).Seconds())
	})
}

// methodLabel keeps the label set small: unknown methods become "other".
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodHead, http.MethodOptions:
		return method
	default:
		return "other"
	}
}

// statusLabel formats common statuses without allocating.
func statusLabel(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusUnauthorized:
		return "401"
	case http.StatusForbidden:
		return "403"
	case http.StatusNotFound:
		return "404"
	case http.StatusTooManyRequests:
		return "429"
	case http.StatusInternalServerError:
		return "500"
	case http.StatusServiceUnavailable:
		return "503"
	default:
		return strconv.Itoa(status)
	}
}
