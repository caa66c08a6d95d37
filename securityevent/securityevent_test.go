package securityevent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newEmitter(
	t *testing.T,
	opts ...securityevent.Option,
) (*securityevent.Emitter, *prometheus.Registry, *testsupport.LogSink) {
	t.Helper()

	logger, sink := testsupport.NewJSONLogger(t)
	reg := prometheus.NewRegistry()
	opts = append([]securityevent.Option{
		securityevent.WithClock(func() time.Time { return fixedNow }),
	}, opts...)
	e, err := securityevent.New(logger, reg, opts...)
	if err != nil {
		t.Fatalf("new emitter: %v", err)
	}

	return e, reg, sink
}

// requestContext is a context as a request handler has it: a request id and
// a span.
func requestContext() context.Context {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	return requestid.NewContext(ctx, "req-7")
}

func TestEvents(t *testing.T) {
	e, _, sink := newEmitter(t)
	ctx := requestContext()

	tests := []struct {
		name  string
		emit  func()
		event string
		want  map[string]any
	}{
		{
			name: "auth failure",
			emit: func() {
				e.AuthFailure(ctx, securityevent.AuthFailure{
					Reason: securityevent.ReasonExpired, ClientIP: "192.0.2.7",
					Method: "/v1/orders", Detail: "exp in the past",
				})
			},
			event: securityevent.EventAuthFailure,
			want: map[string]any{"level": "warn", "reason": "expired",
				"client_ip": "192.0.2.7", "method": "/v1/orders", "detail": "exp in the past"},
		},
		{
			name: "authz denied",
			emit: func() {
				e.AuthzDenied(ctx, securityevent.AuthzDenied{
					Principal: "alice", Method: "/x.Y/Z", ClientIP: "192.0.2.8", Rule: "admins",
				})
			},
			event: securityevent.EventAuthzDenied,
			want:  map[string]any{"level": "warn", "principal": "alice", "rule": "admins"},
		},
		{
			name: "rate limit",
			emit: func() {
				e.RateLimitRejected(ctx, securityevent.RateLimitRejected{
					Limiter: "per_ip", Key: "192.0.2.9", Method: "/v1/products",
				})
			},
			event: securityevent.EventRateLimitRejected,
			want:  map[string]any{"level": "info", "limiter": "per_ip", "key": "192.0.2.9"},
		},
		{
			name: "peer refused",
			emit: func() {
				e.PeerRefused(ctx, securityevent.PeerRefused{
					Peer: "127.0.0.1:5000", Identity: "spiffe://gatehouse/evil",
					Reason: "unknown_identity",
				})
			},
			event: securityevent.EventPeerRefused,
			want: map[string]any{"level": "warn", "identity": "spiffe://gatehouse/evil",
				"reason": "unknown_identity"},
		},
		{
			name: "cert expiring",
			emit: func() {
				e.CertExpiring(ctx, securityevent.CertExpiring{
					Name: "server", Subject: "CN=catalog", NotAfter: fixedNow.Add(90 * time.Second),
				})
			},
			event: securityevent.EventCertExpiring,
			want: map[string]any{"level": "warn", "cert": "server", "remaining_s": 90.0,
				"not_after": "2030-01-02T03:05:35Z"},
		},
		{
			name: "discovery change",
			emit: func() {
				e.DiscoveryChange(ctx, securityevent.DiscoveryChange{
					Service: "catalog", Healthy: 1, Removed: []string{"catalog-2"},
				})
			},
			event: securityevent.EventDiscoveryChange,
			want:  map[string]any{"level": "info", "service": "catalog", "healthy": 1.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.emit()

			entry := sink.WaitFor(t, time.Second, tt.event, func(m map[string]any) bool {
				return m["event"] == tt.event
			})
			want := map[string]any{
				"msg": tt.event, "logger": "security", "request_id": "req-7",
				"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if entry[k] != v {
					t.Errorf("%s = %#v, want %#v", k, entry[k], v)
				}
			}
		})
	}
}

func TestCounters(t *testing.T) {
	e, reg, _ := newEmitter(t)
	ctx := context.Background()

	for range 3 {
		e.AuthFailure(ctx, securityevent.AuthFailure{Reason: securityevent.ReasonBadSignature})
	}
	e.AuthFailure(ctx, securityevent.AuthFailure{Reason: "Not A Label!"})
	e.RateLimitRejected(ctx, securityevent.RateLimitRejected{Limiter: "per_ip"})
	e.PeerRefused(ctx, securityevent.PeerRefused{Reason: "bad_certificate"})
	e.AuthzDenied(ctx, securityevent.AuthzDenied{})

	want := `
# HELP gatehouse_auth_failures_total Failed authentications by reason.
# TYPE gatehouse_auth_failures_total counter
gatehouse_auth_failures_total{reason="bad_signature"} 3
gatehouse_auth_failures_total{reason="other"} 1
# HELP gatehouse_peer_denials_total Peers whose service identity was refused, by reason.
# TYPE gatehouse_peer_denials_total counter
gatehouse_peer_denials_total{reason="bad_certificate"} 1
# HELP gatehouse_ratelimit_rejections_total Requests refused by a rate limiter, by limiter.
# TYPE gatehouse_ratelimit_rejections_total counter
gatehouse_ratelimit_rejections_total{limiter="per_ip"} 1
# HELP gatehouse_security_events_total Security events by event name.
# TYPE gatehouse_security_events_total counter
gatehouse_security_events_total{event="auth_failure"} 4
gatehouse_security_events_total{event="authz_denied"} 1
gatehouse_security_events_total{event="peer_refused"} 1
gatehouse_security_events_total{event="ratelimit_rejected"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"gatehouse_auth_failures_total", "gatehouse_peer_denials_total",
		"gatehouse_ratelimit_rejections_total", "gatehouse_security_events_total",
	); err != nil {
		t.Error(err)
	}
}

// TestSampling checks that a flood of events is thinned in the log but
// counted whole.
func TestSampling(t *testing.T) {
	e, reg, sink := newEmitter(t, securityevent.WithLogSampling(2, 1000))

	for range 50 {
		e.AuthFailure(context.Background(),
			securityevent.AuthFailure{Reason: securityevent.ReasonMissingCredentials})
	}

	if got := len(sink.Find(t, securityevent.EventAuthFailure)); got != 2 {
		t.Errorf("%d log entries for 50 events, want 2 (sampled)", got)
	}
	if got := metricValue(t, reg, "gatehouse_auth_failures_total"); got != 50 {
		t.Errorf("counter = %v, want 50", got)
	}
}

// metricValue returns the value of the single series of counter or gauge
// name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)

	return 0
}

func TestNilEmitterIsSilent(t *testing.T) {
	var e *securityevent.Emitter
	ctx := context.Background()

	// None of these may panic.
	e.AuthFailure(ctx, securityevent.AuthFailure{})
	e.AuthzDenied(ctx, securityevent.AuthzDenied{})
	e.RateLimitRejected(ctx, securityevent.RateLimitRejected{})
	e.PeerRefused(ctx, securityevent.PeerRefused{})
	e.CertExpiring(ctx, securityevent.CertExpiring{})
	e.DiscoveryChange(ctx, securityevent.DiscoveryChange{})
}

func TestNewValidates(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := securityevent.New(zap.NewNop(), reg); err != nil {
		t.Fatalf("first New: %v", err)
	}

	tests := []struct {
		name   string
		logger *zap.Logger
		reg    prometheus.Registerer
	}{
		{"nil logger", nil, prometheus.NewRegistry()},
		{"nil registerer", zap.NewNop(), nil},
		{"metrics already registered", zap.NewNop(), reg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := securityevent.New(tt.logger, tt.reg); err == nil {
				t.Errorf("New succeeded, want an error")
			}
		})
	}
}
