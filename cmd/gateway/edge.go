package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// The services whose REST routes the gateway serves; their methods' proto
// options are the access policy at the edge.
var apiServices = []string{
	"gatehouse.catalog.v1.CatalogService",
	"gatehouse.orders.v1.OrderService",
}

// edgeFlags are the security and observability settings of the edge.
type edgeFlags struct {
	auth           authflags.Flags
	telemetry      telemetry.Flags
	abuse          securityevent.GuardConfig
	rateConfig     string
	rateRedis      string
	trustedProxies string
}

func (f *edgeFlags) register(fs *flag.FlagSet) {
	f.auth.Register(fs)
	f.telemetry.Register(fs, "127.0.0.1:9090")
	f.abuse = securityevent.DefaultGuardConfig()
	f.abuse.RegisterFlags(fs)
	fs.StringVar(&f.rateConfig, "ratelimit-config", "",
		"JSON file of rate limits (default: built-in per-IP and per-principal limits)")
	fs.StringVar(&f.rateRedis, "ratelimit-redis", "",
		"share rate limits across gateway replicas through Redis at host:port")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "",
		"comma-separated CIDRs of proxies whose X-Forwarded-For is honoured")
}

// edge is the running security and observability of the gateway. Close it
// at exit.
type edge struct {
	kit      *telemetry.Kit
	verifier *jwtauth.Verifier
	limiter  ratelimit.Backend
	guard    *auth.Guard
	abuse    *securityevent.AbuseGuard
	ips      *clientip.Resolver
	client   []grpc.DialOption
	layers   gateway.Layers
	rate     ratelimit.Config
	logger   *zap.Logger
	cancel   context.CancelFunc
}

// start builds every piece. The token issuer's keys are fetched in the
// background: until they are, /readyz is 503 and token checks answer 503.
func (f *edgeFlags) start(logger *zap.Logger) (_ *edge, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	e := &edge{logger: logger, cancel: cancel}
	defer func() {
		if err != nil {
			e.close()
		}
	}()

	if e.kit, err = f.telemetry.Start("gateway", "", logger); err != nil {
		return nil, err
	}
	if e.verifier, err = f.auth.NewVerifier(logger); err != nil {
		return nil, err
	}
	f.auth.StartInBackground(ctx, e.verifier, logger)
	e.guard, err = authflags.GuardWith(e.verifier, apiServices, nil,
		auth.WithLogger(logger), auth.WithRefusalHook(gateway.NoteRefusal))
	if err != nil {
		return nil, err
	}

	if e.abuse, err = securityevent.NewAbuseGuard(f.abuse, e.kit.Events,
		securityevent.WithGuardClientIP(e.clientIP)); err != nil {
		return nil, err
	}
	go e.abuse.Run(ctx, 30*time.Second)

	if err := f.startRateLimits(e); err != nil {
		return nil, err
	}

	return e, e.buildLayers()
}

func (f *edgeFlags) startRateLimits(e *edge) error {
	cfg := ratelimit.DefaultConfig()
	if f.rateConfig != "" {
		data, err := os.ReadFile(f.rateConfig)
		if err != nil {
			return fmt.Errorf("read rate limits: %w", err)
		}
		if cfg, err = ratelimit.ParseConfig(data); err != nil {
			return fmt.Errorf("rate limits in %s: %w", f.rateConfig, err)
		}
	}
	if f.rateRedis != "" {
		cfg.Redis = &ratelimit.RedisConfig{Addr: f.rateRedis}
		redis.SetLogger(redisLogger{e.logger.Named("redis")})
	}
	e.rate = cfg

	var proxies []string
	if f.trustedProxies != "" {
		proxies = strings.Split(f.trustedProxies, ",")
	}

	var err error
	if e.ips, err = clientip.New(proxies); err != nil {
		return fmt.Errorf("trusted proxies: %w", err)
	}
	e.limiter, err = ratelimit.Open(cfg, ratelimit.WithLogger(e.logger))

	return err
}

func (e *edge) buildLayers() error {
	httpMetrics, err := metrics.NewHTTP(e.kit.Registry)
	if err != nil {
		return err
	}
	access, err := accesslog.NewHTTP(e.logger,
		accesslog.WithClientIP(e.clientIP), accesslog.WithPrincipal(jwtauth.NameFrom))
	if err != nil {
		return err
	}
	clientMetrics, err := metrics.NewGRPCClient(e.kit.Registry)
	if err != nil {
		return err
	}

	e.layers = gateway.Layers{
		Tracing:   e.kit.Tracing,
		Metrics:   httpMetrics,
		AccessLog: access,
		Abuse:     e.abuse,
	}

	// Client interceptor order, first = outermost, the same on every
	// backend connection: tracing (interceptors when export is off, else a
	// stats handler), metrics, request id, then (added by the caller)
	// validation, which refuses an invalid request before it costs a hop.
	e.client = append(e.kit.Tracing.DialOptions(),
		grpc.WithChainUnaryInterceptor(clientMetrics.UnaryClientInterceptor(),
			requestid.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(clientMetrics.StreamClientInterceptor(),
			requestid.StreamClientInterceptor()),
	)

	return nil
}

// configure sets the gateway's end-user authentication, rate limits and
// readiness checks. resolve names the RPC of a request, for the limits'
// per-method rules; it works in front of the gateway too, so the per-IP
// stage, which runs before routing, applies them as well.
func (e *edge) configure(cfg *gateway.Config, resolve httplimit.MethodResolver) error {
	cfg.Auth = e.guard
	cfg.OnAuthRefused = e.authRefused
	cfg.ReadyChecks = map[string]func() error{"token_keys": e.verifier.Ready}

	if e.rate.PerIP != nil {
		perIP, err := httplimit.NewIPStage(e.limiter, *e.rate.PerIP, e.ips,
			httplimit.WithLogger(e.logger), httplimit.WithMethodResolver(resolve),
			httplimit.WithRefusalHook(e.rateLimited))
		if err != nil {
			return err
		}
		e.layers.PerIP = perIP
	}

	if e.rate.PerPrincipal == nil {
		return nil
	}

	stage, err := httplimit.NewPrincipalStage(e.limiter, *e.rate.PerPrincipal,
		gateway.PrincipalLimitKey,
		httplimit.WithLogger(e.logger), httplimit.WithMethodResolver(resolve),
		httplimit.WithRefusalHook(e.rateLimited))
	if err != nil {
		return err
	}
	cfg.PrincipalLimit = stage

	return nil
}

// checkMethodRules refuses rate-limit rules keyed by an RPC that no route
// of gw calls: misspelt, or not reachable through the gateway, such a rule
// would never apply, and nothing would say so.
func (e *edge) checkMethodRules(gw *gateway.Gateway) error {
	stages := []struct {
		name   string
		policy *ratelimit.Policy
	}{{"perIP", e.rate.PerIP}, {"perPrincipal", e.rate.PerPrincipal}}

	var errs []error
	for _, st := range stages {
		if st.policy == nil {
			continue
		}
		for _, method := range slices.Sorted(maps.Keys(st.policy.Methods)) {
			if !gw.Serves(method) {
				errs = append(errs, fmt.Errorf("%s.methods: no route of the gateway calls %q",
					st.name, method))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rate limits: %w", errors.Join(errs...))
	}

	return nil
}

// authRefused records a refused request: a security event, and for
// authentication failures (not 403s) a strike for the abuse guard. A
// request that carried no token at all is no guess at credentials and
// costs no verification, so it is not a strike: otherwise one client that
// forgot its token would block everyone behind its address.
func (e *edge) authRefused(r *http.Request, status int, reason error) {
	ip := e.clientIP(r)
	method := r.Method + " " + r.URL.Path

	if status == http.StatusForbidden {
		e.kit.Events.AuthzDenied(r.Context(), securityevent.AuthzDenied{
			Principal: jwtauth.NameFrom(r.Context()), Method: method, ClientIP: ip,
			Rule: "method user rule",
		})
		return
	}

	e.kit.Events.AuthFailure(r.Context(), securityevent.AuthFailure{
		Reason: securityevent.TokenReason(reason), ClientIP: ip, Method: method,
	})
	if !errors.Is(reason, jwtauth.ErrNoToken) {
		e.abuse.RecordFailure(ip)
	}
}

// rateLimited records a request a rate-limit stage refused.
func (e *edge) rateLimited(r *http.Request, stage, key string) {
	e.kit.Events.RateLimitRejected(r.Context(), securityevent.RateLimitRejected{
		Limiter: "per_" + stage, Key: key, ClientIP: e.clientIP(r),
		Method: r.Method + " " + r.URL.Path,
	})
}

func (e *edge) clientIP(r *http.Request) string {
	if addr, ok := e.ips.ClientIP(r); ok {
		return addr.String()
	}

	return r.RemoteAddr
}

func (e *edge) close() {
	e.cancel()

	var errs []error
	if e.limiter != nil {
		errs = append(errs, e.limiter.Close())
	}
	if e.verifier != nil {
		errs = append(errs, e.verifier.Close())
	}
	if e.kit != nil {
		errs = append(errs, e.kit.Close())
	}
	if err := errors.Join(errs...); err != nil {
		e.logger.Warn("closing the edge", zap.Error(err))
	}
}

// redisLogger sends go-redis's own messages to zap instead of stderr.
type redisLogger struct{ logger *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	// The limiter itself logs an outage once; go-redis repeats it per dial.
	l.logger.Debug(fmt.Sprintf(format, v...))
}
