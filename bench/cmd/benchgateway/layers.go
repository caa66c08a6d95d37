package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// apiServices are the services whose REST routes the gateway serves, as in
// cmd/gateway; their methods' proto options are the policy at the edge.
var apiServices = []string{
	"gatehouse.catalog.v1.CatalogService",
	"gatehouse.orders.v1.OrderService",
}

// composition is Gatehouse's gateway with the chosen layers, wired as
// cmd/gateway wires them. Close it at exit.
type composition struct {
	opts    options
	logger  *zap.Logger
	ips     *clientip.Resolver
	reg     *prometheus.Registry
	cfg     gateway.Config
	layers  gateway.Layers
	gw      *gateway.Gateway
	closers []func() error

	// Client options of both backend connections; interceptors in order,
	// first = outermost.
	dial   []grpc.DialOption
	unary  []grpc.UnaryClientInterceptor
	stream []grpc.StreamClientInterceptor
}

// compose builds the gateway with layers. On error the returned
// composition (possibly nil) still needs closing.
func compose(
	ctx context.Context,
	o options,
	layers []string,
	reg *prometheus.Registry,
	logger *zap.Logger,
) (*composition, error) {
	c := &composition{opts: o, logger: logger, reg: reg,
		cfg: gateway.Config{OpenAPI: openapi.Document, Logger: logger}}
	has := func(l string) bool { return slices.Contains(layers, l) }

	var err error
	if c.ips, err = clientip.New(nil); err != nil {
		return c, err
	}

	// Same order as cmd/gateway: tracing's stats handler, then client
	// metrics, request id and validation interceptors; at the HTTP side
	// gateway.Layers fixes the order of the middlewares.
	steps := []struct {
		layer string
		add   func(context.Context) error
	}{
		{layerTracing, c.addTracing},
		{layerMetrics, c.addMetrics},
		{layerAccessLog, c.addAccessLog},
		{layerValidation, c.addValidation},
		{layerJWT, c.addJWT},
		{layerRateLimit, c.addRateLimit},
	}
	for _, s := range steps {
		if !has(s.layer) {
			continue
		}
		if err := s.add(ctx); err != nil {
			return c, fmt.Errorf("layer %s: %w", s.layer, err)
		}
	}

	if err := c.dialBackends(has(layerMTLS)); err != nil {
		return c, err
	}

	// The per-principal limit needs the matched route's method, which only
	// the gateway knows; c.gw is set before any request arrives.
	if c.gw, err = gateway.New(c.cfg); err != nil {
		return c, err
	}

	return c, nil
}

// server returns the HTTP server of the composed gateway, with the
// gateway's own server limits.
func (c *composition) server() (*http.Server, error) {
	return gateway.NewHTTPServer(c.layers.Wrap(c.gw), gateway.ServerConfig{Logger: c.logger})
}

func (c *composition) close() {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	if err := errors.Join(errs...); err != nil {
		c.logger.Warn("closing layers", zap.Error(err))
	}
}

func (c *composition) addTracing(context.Context) error {
	cfg := c.opts.trace
	cfg.ServiceName = "benchgateway"
	tr, err := tracing.New(cfg)
	if err != nil {
		return err
	}

	c.layers.Tracing = tr
	c.dial = append(c.dial, tr.DialOptions()...)
	c.closers = append(c.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return tr.Shutdown(ctx)
	})

	return nil
}

func (c *composition) addMetrics(context.Context) error {
	httpMetrics, err := metrics.NewHTTP(c.reg)
	if err != nil {
		return err
	}
	clientMetrics, err := metrics.NewGRPCClient(c.reg)
	if err != nil {
		return err
	}

	c.layers.Metrics = httpMetrics
	c.unary = append(c.unary, clientMetrics.UnaryClientInterceptor())
	c.stream = append(c.stream, clientMetrics.StreamClientInterceptor())

	return nil
}

// addAccessLog adds the access log middleware and, with it, the request id
// travelling to the backends.
func (c *composition) addAccessLog(context.Context) error {
	access, err := accesslog.NewHTTP(c.logger,
		accesslog.WithClientIP(c.clientIP), accesslog.WithPrincipal(jwtauth.NameFrom))
	if err != nil {
		return err
	}

	c.layers.AccessLog = access
	c.unary = append(c.unary, requestid.UnaryClientInterceptor())
	c.stream = append(c.stream, requestid.StreamClientInterceptor())

	return nil
}

func (c *composition) addValidation(context.Context) error {
	validator, err := validation.New(validation.WithLogger(c.logger))
	if err != nil {
		return err
	}

	c.unary = append(c.unary, validator.UnaryClientInterceptor())
	c.stream = append(c.stream, validator.StreamClientInterceptor())

	return nil
}

// addJWT adds end-user authentication (the verifier waits for the issuer's
// keys) and, as in cmd/gateway, the abuse guard fed by refused requests.
func (c *composition) addJWT(ctx context.Context) error {
	verifier, err := c.opts.authFlags.Verifier(ctx, c.logger)
	if err != nil {
		return err
	}
	c.closers = append(c.closers, verifier.Close)

	guard, err := authflags.Guard(verifier, c.logger, apiServices)
	if err != nil {
		return err
	}

	events, err := securityevent.New(c.logger, c.reg)
	if err != nil {
		return err
	}
	abuse, err := securityevent.NewAbuseGuard(securityevent.DefaultGuardConfig(), events,
		securityevent.WithGuardClientIP(c.clientIP))
	if err != nil {
		return err
	}
	guardCtx, cancel := context.WithCancel(context.Background())
	go abuse.Run(guardCtx, 30*time.Second)
	c.closers = append(c.closers, func() error { cancel(); return nil })

	c.cfg.Auth = guard
	c.cfg.OnAuthRefused = func(r *http.Request, status int, _ error) {
		if status != http.StatusForbidden {
			abuse.RecordFailure(c.clientIP(r))
		}
	}
	c.layers.Abuse = abuse

	return nil
}

// addRateLimit adds the per-IP stage (before authentication) and the
// per-principal stage (after it; without the jwt layer no request has a
// principal, so that stage lets every request through unkeyed).
func (c *composition) addRateLimit(context.Context) error {
	cfg := ratelimit.DefaultConfig()
	if c.opts.rateConfig != "" {
		data, err := os.ReadFile(c.opts.rateConfig)
		if err != nil {
			return fmt.Errorf("read rate limits: %w", err)
		}
		if cfg, err = ratelimit.ParseConfig(data); err != nil {
			return fmt.Errorf("rate limits in %s: %w", c.opts.rateConfig, err)
		}
	}

	limiter, err := ratelimit.Open(cfg, ratelimit.WithLogger(c.logger))
	if err != nil {
		return err
	}
	c.closers = append(c.closers, limiter.Close)

	if cfg.PerIP != nil {
		if c.layers.PerIP, err = httplimit.NewIPStage(limiter, *cfg.PerIP, c.ips,
			httplimit.WithLogger(c.logger)); err != nil {
			return err
		}
	}
	if cfg.PerPrincipal != nil {
		resolve := func(r *http.Request) (string, bool) { return c.gw.Method(r) }
		if c.cfg.PrincipalLimit, err = httplimit.NewPrincipalStage(limiter, *cfg.PerPrincipal,
			gateway.PrincipalLimitKey, httplimit.WithLogger(c.logger),
			httplimit.WithMethodResolver(resolve)); err != nil {
			return err
		}
	}

	return nil
}

// dialBackends connects to catalog and orders, over mutual TLS with the
// gateway's identity from -cert-dir when withTLS, else in plaintext.
func (c *composition) dialBackends(withTLS bool) error {
	creds := func(string) (credentials.TransportCredentials, error) {
		return insecure.NewCredentials(), nil
	}
	if withTLS {
		var err error
		if creds, err = c.mtlsCredentials(); err != nil {
			return err
		}
	}

	dial := func(service, addr string) (*grpc.ClientConn, error) {
		tc, err := creds(service)
		if err != nil {
			return nil, err
		}
		opts := append(slices.Clone(c.dial),
			grpc.WithTransportCredentials(tc),
			grpc.WithChainUnaryInterceptor(c.unary...),
			grpc.WithChainStreamInterceptor(c.stream...))
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("dial %s at %s: %w", service, addr, err)
		}
		c.closers = append(c.closers, conn.Close)

		return conn, nil
	}

	catalogConn, err := dial("catalog", c.opts.catalog)
	if err != nil {
		return err
	}
	ordersConn, err := dial("orders", c.opts.orders)
	if err != nil {
		return err
	}
	c.cfg.Catalog, c.cfg.Orders = catalogConn, ordersConn

	return nil
}

// mtlsCredentials returns, per backend service, client credentials that
// present the gateway's certificate and accept only that service.
func (c *composition) mtlsCredentials() (
	func(string) (credentials.TransportCredentials, error),
	error,
) {
	certs, err := c.opts.certFlags.Source("gateway", c.logger)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, certs.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := certs.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("gateway certificate: %w", err)
	}

	return func(service string) (credentials.TransportCredentials, error) {
		id, err := c.opts.certFlags.ID(service)
		if err != nil {
			return nil, err
		}

		return mtls.NewClientCredentials(certs, id, mtls.WithLogger(c.logger))
	}, nil
}

func (c *composition) clientIP(r *http.Request) string {
	if addr, ok := c.ips.ClientIP(r); ok {
		return addr.String()
	}

	return r.RemoteAddr
}
