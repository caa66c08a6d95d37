package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/platform"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// testTimeout bounds every request and the admin listener's shutdown.
const testTimeout = 10 * time.Second

var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// stepClock moves 7ms per reading, so every request takes exactly 7ms.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	now := c.t
	c.t = c.t.Add(7 * time.Millisecond)

	return now
}

// startAdmin runs an admin listener on 127.0.0.1 until the test ends and
// returns its base URL.
func startAdmin(t *testing.T, g prometheus.Gatherer, opts ...metrics.Option) string {
	t.Helper()

	admin, err := metrics.NewAdmin("127.0.0.1:0", g, opts...)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("admin run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("admin did not stop")
		}
	})

	return "http://" + admin.Addr().String()
}

// scrape fetches /metrics over HTTP and parses the text exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()

	resp := get(t, base+"/metrics")
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}

	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}

	return mfs
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}

	return resp
}

// find returns the series of name whose labels include want, or nil.
func find(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}

	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}

		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}

	return nil
}

// value is the counter, gauge or histogram count of m.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	default:
		return m.GetUntyped().GetValue()
	}
}

// TestScrapeAfterKnownTraffic sends a known mix of requests through a
// gateway-like stack with every metric wired, scrapes /metrics over HTTP
// and checks the counts.
func TestScrapeAfterKnownTraffic(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	clock := &stepClock{t: fixedNow}

	server, err := metrics.NewGRPCServer(reg)
	if err != nil {
		t.Fatalf("grpc server metrics: %v", err)
	}
	client, err := metrics.NewGRPCClient(reg)
	if err != nil {
		t.Fatalf("grpc client metrics: %v", err)
	}
	httpMetrics, err := metrics.NewHTTP(reg, metrics.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("http metrics: %v", err)
	}
	endpoints, err := metrics.NewEndpoints(reg)
	if err != nil {
		t.Fatalf("endpoints: %v", err)
	}
	certs, err := metrics.NewCertExpiry(reg, metrics.WithClock(func() time.Time {
		return fixedNow
	}))
	if err != nil {
		t.Fatalf("cert expiry: %v", err)
	}
	events, err := securityevent.New(zap.NewNop(), reg)
	if err != nil {
		t.Fatalf("security events: %v", err)
	}

	// The catalog service with server metrics, the gateway's connection
	// with client metrics, and the HTTP metrics around the gateway mux.
	store, err := catalog.NewStore(catalog.SampleProducts())
	if err != nil {
		t.Fatalf("catalog store: %v", err)
	}
	svc, err := catalog.NewServer(store)
	if err != nil {
		t.Fatalf("catalog server: %v", err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(server.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(server.StreamServerInterceptor()),
	)
	catalogv1.RegisterCatalogServiceServer(srv, svc)
	server.InitializeMetrics(srv)
	conn := testsupport.DialGRPC(t, testsupport.ServeGRPC(t, srv),
		grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(client.StreamClientInterceptor()),
	)
	mux := platform.GatewayMux(t, conn, nil, runtime.WithMetadata(httpcall.Annotate))
	gw := httptest.NewServer(httpMetrics.Middleware(mux))
	t.Cleanup(gw.Close)

	traffic := []struct {
		path  string
		times int
	}{
		{"/v1/products/p-1001", 3},
		{"/v1/products/p-0000", 2},
		{"/v1/products", 1},
		{"/nowhere", 1},
	}
	for _, tr := range traffic {
		for range tr.times {
			resp := get(t, gw.URL+tr.path)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}
	for range 2 {
		events.AuthFailure(context.Background(),
			securityevent.AuthFailure{Reason: securityevent.ReasonExpired})
	}
	events.RateLimitRejected(context.Background(),
		securityevent.RateLimitRejected{Limiter: "per_ip"})
	events.PeerRefused(context.Background(),
		securityevent.PeerRefused{Reason: "unknown_identity"})
	endpoints.SetHealthy("catalog", 2)
	endpoints.SetHealthy("orders", 0)
	certs.Set("server", fixedNow.Add(90*time.Second))

	mfs := scrape(t, startAdmin(t, reg))

	getProduct := map[string]string{"grpc_service": "gatehouse.catalog.v1.CatalogService",
		"grpc_method": "GetProduct"}
	with := func(base map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for bk, bv := range base {
			out[bk] = bv
		}
		return out
	}

	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"http 200 by route", "gatehouse_http_requests_total",
			map[string]string{"method": "GET", "route": "/v1/products/{id}", "code": "200"}, 3},
		{"http 404 by route", "gatehouse_http_requests_total",
			map[string]string{"method": "GET", "route": "/v1/products/{id}", "code": "404"}, 2},
		{"http list route", "gatehouse_http_requests_total",
			map[string]string{"route": "/v1/products", "code": "200"}, 1},
		{"http unmatched", "gatehouse_http_requests_total",
			map[string]string{"route": "unmatched", "code": "404"}, 1},
		{"http latency count", "gatehouse_http_request_duration_seconds",
			map[string]string{"route": "/v1/products/{id}", "code": "200"}, 3},
		{"grpc server ok", "grpc_server_handled_total", with(getProduct, "grpc_code", "OK"), 3},
		{"grpc server not found", "grpc_server_handled_total",
			with(getProduct, "grpc_code", "NotFound"), 2},
		{"grpc server method initialised at zero", "grpc_server_started_total",
			map[string]string{"grpc_method": "ReserveStock"}, 0},
		{"grpc server latency count", "grpc_server_handling_seconds", getProduct, 5},
		{"grpc client ok", "grpc_client_handled_total", with(getProduct, "grpc_code", "OK"), 3},
		{"grpc client latency count", "grpc_client_handling_seconds", getProduct, 5},
		{"auth failures by reason", "gatehouse_auth_failures_total",
			map[string]string{"reason": "expired"}, 2},
		{"rate-limit rejections", "gatehouse_ratelimit_rejections_total",
			map[string]string{"limiter": "per_ip"}, 1},
		{"peer denials", "gatehouse_peer_denials_total",
			map[string]string{"reason": "unknown_identity"}, 1},
		{"healthy endpoints", "gatehouse_discovery_healthy_endpoints",
			map[string]string{"service": "catalog"}, 2},
		{"no healthy endpoints", "gatehouse_discovery_healthy_endpoints",
			map[string]string{"service": "orders"}, 0},
		{"certificate expiry", "gatehouse_certificate_expiry_seconds",
			map[string]string{"cert": "server"}, 90},
		{"go runtime", "go_goroutines", nil, -1},
		{"process", "process_start_time_seconds", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := find(mfs, tt.metric, tt.labels)
			if m == nil {
				t.Fatalf("no %s%v in the scrape; families: %s", tt.metric, tt.labels,
					names(mfs))
			}
			if tt.want >= 0 && value(m) != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, value(m), tt.want)
			}
		})
	}

	// Each request took 7ms on the injected clock.
	h := find(mfs, "gatehouse_http_request_duration_seconds",
		map[string]string{"route": "/v1/products/{id}", "code": "200"}).GetHistogram()
	if sum := h.GetSampleSum(); sum < 0.0209 || sum > 0.0211 {
		t.Errorf("latency sum = %v, want 0.021", sum)
	}
}

func names(mfs map[string]*dto.MetricFamily) string {
	var out []string
	for n := range mfs {
		out = append(out, n)
	}
	sort.Strings(out)

	return strings.Join(out, " ")
}

// TestHTTPLabelsAreBounded checks that odd methods and statuses do not
// create new label values beyond "other" and the status code.
func TestHTTPLabelsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewHTTP(reg)
	if err != nil {
		t.Fatalf("http metrics: %v", err)
	}
	srv := httptest.NewServer(m.Middleware(http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })))
	t.Cleanup(srv.Close)

	for _, method := range []string{"BREW", "PROPFIND", http.MethodGet} {
		req, err := http.NewRequest(method, srv.URL+"/raw/path/123", nil)
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		_ = resp.Body.Close()
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "gatehouse_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				key += lp.GetName() + "=" + lp.GetValue() + " "
			}
			got[strings.TrimSpace(key)] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"code=418 method=other route=unmatched": 2,
		"code=418 method=GET route=unmatched":   1,
	}
	if len(got) != len(want) {
		t.Errorf("series = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// TestAdmin checks the admin listener's routes and pprof switch.
func TestAdmin(t *testing.T) {
	tests := []struct {
		name      string
		opts      []metrics.Option
		wantPprof int
	}{
		{"pprof off by default", nil, http.StatusNotFound},
		{"pprof on", []metrics.Option{metrics.WithPprof(true)}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := metrics.NewRegistry()
			if err != nil {
				t.Fatalf("registry: %v", err)
			}
			base := startAdmin(t, reg, tt.opts...)

			resp := get(t, base+"/debug/pprof/")
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantPprof {
				t.Errorf("/debug/pprof/ status %d, want %d", resp.StatusCode, tt.wantPprof)
			}
			if _, ok := scrape(t, base)["go_goroutines"]; !ok {
				t.Errorf("scrape has no go_goroutines")
			}
		})
	}
}

func TestConstructorsValidate(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.NewHTTP(reg); err != nil {
		t.Fatalf("first NewHTTP: %v", err)
	}

	tests := []struct {
		name string
		fn   func() error
	}{
		{"http twice on one registry", func() error { _, err := metrics.NewHTTP(reg); return err }},
		{"http nil registerer", func() error { _, err := metrics.NewHTTP(nil); return err }},
		{"grpc server nil registerer", func() error {
			_, err := metrics.NewGRPCServer(nil)
			return err
		}},
		{"endpoints nil registerer", func() error {
			_, err := metrics.NewEndpoints(nil)
			return err
		}},
		{"admin nil gatherer", func() error {
			_, err := metrics.NewAdmin("127.0.0.1:0", nil)
			return err
		}},
		{"admin bad address", func() error {
			_, err := metrics.NewAdmin("no-port", reg)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); err == nil {
				t.Errorf("succeeded, want an error")
			}
		})
	}
}

func TestCertExpiryTrack(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ce, err := metrics.NewCertExpiry(reg, metrics.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}

	notAfter, loaded := now.Add(time.Hour), false
	ce.Track("svc", func() (time.Time, bool) { return notAfter, loaded })

	if n := testutil.CollectAndCount(ce); n != 0 {
		t.Fatalf("%d series before the certificate is loaded, want 0", n)
	}

	loaded = true
	if got := testutil.ToFloat64(ce); got != 3600 {
		t.Fatalf("expiry %v s, want 3600", got)
	}

	notAfter = now.Add(2 * time.Hour) // rotated: no Set call needed
	if got := testutil.ToFloat64(ce); got != 7200 {
		t.Fatalf("after rotation %v s, want 7200", got)
	}

	ce.Delete("svc")
	if n := testutil.CollectAndCount(ce); n != 0 {
		t.Fatalf("%d series after Delete, want 0", n)
	}
}
