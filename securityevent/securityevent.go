// Package securityevent records security-relevant happenings (failed
// authentication, denied authorization, rate-limit rejections, refused peers,
// certificates close to expiry, discovery changes, abuse blocks) as log
// entries of their own, each with a stable "event" field, and counts them in
// Prometheus so an attack shows on a dashboard as it happens.
//
// Events are typed structs with fixed fields. None of them has room for a
// token, a cookie or key material: callers pass reasons and names, never
// credentials.
//
// The package also holds AbuseGuard, which refuses clients that keep failing
// authentication.
package securityevent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Event names, the values of the "event" field and of the event label of
// gatehouse_security_events_total. They are stable: dashboards and alerts
// match on them.
const (
	EventAuthFailure       = "auth_failure"
	EventAuthzDenied       = "authz_denied"
	EventRateLimitRejected = "ratelimit_rejected"
	EventPeerRefused       = "peer_refused"
	EventCertExpiring      = "cert_expiring"
	EventDiscoveryChange   = "discovery_change"
	EventAbuseBlockStarted = "abuse_block_started"
	EventAbuseBlockEnded   = "abuse_block_ended"
)

// Reason says why authentication failed. It becomes a metric label, so it
// must come from a small fixed set: use the constants below or other short
// snake_case words. Anything else is counted as "other".
type Reason string

// Reasons for authentication failures.
const (
	ReasonMissingCredentials Reason = "missing_credentials"
	ReasonMalformedToken     Reason = "malformed_token"
	ReasonBadSignature       Reason = "bad_signature"
	ReasonExpired            Reason = "expired"
	ReasonNotYetValid        Reason = "not_yet_valid"
	ReasonWrongIssuer        Reason = "wrong_issuer"
	ReasonWrongAudience      Reason = "wrong_audience"
	ReasonUnknownKey         Reason = "unknown_key"
	ReasonBadCertificate     Reason = "bad_certificate"
)

// maxLabel is the longest label value accepted as is.
const maxLabel = 40

// maxText bounds free-text fields copied into a log entry.
const maxText = 256

// ErrNilLogger and ErrNilRegisterer are returned by New for missing inputs.
var (
	ErrNilLogger     = errors.New("securityevent: logger is nil")
	ErrNilRegisterer = errors.New("securityevent: prometheus registerer is nil")
)

// AuthFailure is a request whose credentials were missing or not accepted.
type AuthFailure struct {
	// Reason is why, from a small fixed set (see Reason).
	Reason Reason
	// ClientIP is the address the request came from.
	ClientIP string
	// Method is the gRPC method or HTTP route template that was called.
	Method string
	// Detail is a short explanation for the log, for example the name of
	// the failed check. Never put the credential itself here.
	Detail string
}

// AuthzDenied is an authenticated caller refused by policy.
type AuthzDenied struct {
	Principal string
	Method    string
	ClientIP  string
	// Rule names the policy or rule that denied the call.
	Rule string
}

// RateLimitRejected is a request refused by a rate limiter.
type RateLimitRejected struct {
	// Limiter names the limit that was hit ("per_ip", "per_principal"); it
	// becomes a metric label, so keep the set small.
	Limiter string
	// Key is what was limited, for example the IP or principal.
	Key      string
	Method   string
	ClientIP string
}

// PeerRefused is a connection or call from a service identity that was not
// accepted (bad certificate, unknown or unauthorized identity).
type PeerRefused struct {
	// Peer is the network address of the peer.
	Peer string
	// Identity is the identity the peer presented, if any.
	Identity string
	// Reason is why, as a short snake_case word; it becomes a metric label.
	Reason string
}

// CertExpiring is a certificate of ours that will expire soon.
type CertExpiring struct {
	// Name says which certificate ("server", "client", the file name).
	Name     string
	Subject  string
	NotAfter time.Time
}

// DiscoveryChange is a change in the healthy endpoints of a service.
type DiscoveryChange struct {
	Service string
	Healthy int
	Added   []string
	Removed []string
}

// Emitter writes security events and counts them. It is safe for concurrent
// use. A nil *Emitter is valid and does nothing, so callers may leave it out.
type Emitter struct {
	logger *zap.Logger
	now    func() time.Time

	events        *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	peerDenials   *prometheus.CounterVec
	abuseBlocked  prometheus.Gauge
	abuseRefusals prometheus.Counter
}

// Option configures an Emitter.
type Option func(*options)

type options struct {
	now        func() time.Time
	sampleOn   bool
	first      int
	thereafter int
}

// WithClock sets the clock used to compute how long a certificate has left.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithLogSampling limits log entries to the first `first` of each event kind
// per second and every `thereafter`-th after that, so an attack cannot flood
// the log. Counters always count every event. The default is 100 and 100;
// first <= 0 turns sampling off.
func WithLogSampling(first, thereafter int) Option {
	return func(o *options) {
		o.sampleOn = first > 0
		o.first, o.thereafter = first, thereafter
	}
}

// New returns an Emitter that logs to logger (named "security") and
// registers its counters with reg.
func New(logger *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Emitter, error) {
	if logger == nil {
		return nil, ErrNilLogger
	}
	if reg == nil {
		return nil, ErrNilRegisterer
	}

	o := options{now: time.Now, sampleOn: true, first: 100, thereafter: 100}
	for _, opt := range opts {
		opt(&o)
	}

	logger = logger.Named("security")
	if o.sampleOn {
		logger = logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(c, time.Second, o.first, o.thereafter)
		}))
	}

	e := &Emitter{logger: logger, now: o.now}
	if err := e.register(reg); err != nil {
		return nil, err
	}

	return e, nil
}

func (e *Emitter) register(reg prometheus.Registerer) error {
	e.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_security_events_total",
		Help: "Security events by event name.",
	}, []string{"event"})
	e.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_auth_failures_total",
		Help: "Failed authentications by reason.",
	}, []string{"reason"})
	e.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_ratelimit_rejections_total",
		Help: "Requests refused by a rate limiter, by limiter.",
	}, []string{"limiter"})
	e.peerDenials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_peer_denials_total",
		Help: "Peers whose service identity was refused, by reason.",
	}, []string{"reason"})
	e.abuseBlocked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gatehouse_abuse_blocked_clients",
		Help: "Clients currently refused by the abuse guard.",
	})
	e.abuseRefusals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_abuse_refusals_total",
		Help: "Requests refused because their client is blocked by the abuse guard.",
	})

	for _, c := range []prometheus.Collector{
		e.events, e.authFailures, e.rateLimited, e.peerDenials, e.abuseBlocked, e.abuseRefusals,
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("securityevent: register metrics: %w", err)
		}
	}

	return nil
}

// AuthFailure records a failed authentication.
func (e *Emitter) AuthFailure(ctx context.Context, ev AuthFailure) {
	if e == nil {
		return
	}

	reason := label(string(ev.Reason))
	e.authFailures.WithLabelValues(reason).Inc()
	e.emit(ctx, zapcore.WarnLevel, EventAuthFailure,
		zap.String("reason", reason),
		zap.String("client_ip", text(ev.ClientIP)),
		zap.String("method", text(ev.Method)),
		zap.String("detail", text(ev.Detail)),
	)
}

// AuthzDenied records a call refused by authorization policy.
func (e *Emitter) AuthzDenied(ctx context.Context, ev AuthzDenied) {
	if e == nil {
		return
	}

	e.emit(ctx, zapcore.WarnLevel, EventAuthzDenied,
		zap.String("principal", text(ev.Principal)),
		zap.String("method", text(ev.Method)),
		zap.String("client_ip", text(ev.ClientIP)),
		zap.String("rule", text(ev.Rule)),
	)
}

// RateLimitRejected records a request refused by a rate limiter.
func (e *Emitter) RateLimitRejected(ctx context.Context, ev RateLimitRejected) {
	if e == nil {
		return
	}

	limiter := label(ev.Limiter)
	e.rateLimited.WithLabelValues(limiter).Inc()
	e.emit(ctx, zapcore.InfoLevel, EventRateLimitRejected,
		zap.String("limiter", limiter),
		zap.String("key", text(ev.Key)),
		zap.String("method", text(ev.Method)),
		zap.String("client_ip", text(ev.ClientIP)),
	)
}

// PeerRefused records a refused service identity.
func (e *Emitter) PeerRefused(ctx context.Context, ev PeerRefused) {
	if e == nil {
		return
	}

	reason := label(ev.Reason)
	e.peerDenials.WithLabelValues(reason).Inc()
	e.emit(ctx, zapcore.WarnLevel, EventPeerRefused,
		zap.String("peer", text(ev.Peer)),
		zap.String("identity", text(ev.Identity)),
		zap.String("reason", reason),
	)
}

// CertExpiring records that a certificate of ours expires soon. Callers
// decide what "soon" is; the entry says how long is left.
func (e *Emitter) CertExpiring(ctx context.Context, ev CertExpiring) {
	if e == nil {
		return
	}

	e.emit(ctx, zapcore.WarnLevel, EventCertExpiring,
		zap.String("cert", text(ev.Name)),
		zap.String("subject", text(ev.Subject)),
		zap.Time("not_after", ev.NotAfter),
		zap.Float64("remaining_s", ev.NotAfter.Sub(e.now()).Seconds()),
	)
}

// DiscoveryChange records a change in a service's healthy endpoints.
func (e *Emitter) DiscoveryChange(ctx context.Context, ev DiscoveryChange) {
	if e == nil {
		return
	}

	e.emit(ctx, zapcore.InfoLevel, EventDiscoveryChange,
		zap.String("service", text(ev.Service)),
		zap.Int("healthy", ev.Healthy),
		zap.Strings("added", ev.Added),
		zap.Strings("removed", ev.Removed),
	)
}

// emit counts the event and writes its entry, with the request and trace id
// of ctx when it has them.
func (e *Emitter) emit(
	ctx context.Context,
	level zapcore.Level,
	event string,
	fields ...zap.Field,
) {
	e.events.WithLabelValues(event).Inc()

	ce := e.logger.Check(level, event)
	if ce == nil {
		return
	}

	fields = append(fields, zap.String("event", event))
	if ctx != nil {
		if id := requestid.FromContext(ctx); id != "" {
			fields = append(fields, zap.String("request_id", id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
		}
	}

	ce.Write(fields...)
}

// label returns s if it is a short snake_case word, else "other".
func label(s string) string {
	if s == "" || len(s) > maxLabel {
		return "other"
	}

	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return "other"
		}
	}

	return s
}

// text bounds a caller-supplied string before it is logged.
func text(s string) string {
	if len(s) > maxText {
		return s[:maxText]
	}

	return s
}
