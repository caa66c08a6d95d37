// Package telemetry gives every Gatehouse binary the same observability
// kit from its flags: one Prometheus registry served on a separate admin
// listener, OpenTelemetry tracing (export off unless an OTLP endpoint is
// set), and a security-event emitter counting into the same registry.
// Only binaries (cmd/) use it; libraries take the pieces they need.
package telemetry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/metrics"
	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.uber.org/zap"
)

// Flags are the observability settings of a binary.
type Flags struct {
	Admin metrics.AdminFlags
	Trace tracing.Config
}

// Register adds the admin-listener and tracing flags to fs; defaultAdmin is
// the binary's default admin address ("" turns the listener off).
func (f *Flags) Register(fs *flag.FlagSet, defaultAdmin string) {
	f.Admin.Register(fs, defaultAdmin)
	f.Trace.RegisterFlags(fs)
}

// Kit is the running observability of one binary. Close it at exit.
type Kit struct {
	// Registry holds every metric of the binary.
	Registry *prometheus.Registry
	// Tracing creates spans and propagates W3C trace context.
	Tracing *tracing.Tracing
	// Events logs and counts security events.
	Events *securityevent.Emitter
	// CertExpiry reports seconds until each certificate expires.
	CertExpiry *metrics.CertExpiry
	// Endpoints reports healthy endpoints per service seen by discovery.
	Endpoints *metrics.Endpoints

	admin  *metrics.Admin
	logger *zap.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Start builds the kit for the named binary and starts its admin listener.
func (f *Flags) Start(service, instance string, logger *zap.Logger) (*Kit, error) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}

	cfg := f.Trace
	cfg.ServiceName, cfg.Instance = service, instance
	tr, err := tracing.New(cfg)
	if err != nil {
		return nil, err
	}
	otel.SetErrorHandler(tracing.LogErrors(logger))

	k := &Kit{Registry: reg, Tracing: tr, logger: logger, done: make(chan struct{})}
	if k.Events, err = securityevent.New(logger, reg); err != nil {
		return nil, err
	}
	if k.CertExpiry, err = metrics.NewCertExpiry(reg); err != nil {
		return nil, err
	}
	if k.Endpoints, err = metrics.NewEndpoints(reg); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	if f.Admin.Listen == "" {
		close(k.done)
		return k, nil
	}

	k.admin, err = metrics.NewAdmin(f.Admin.Listen, reg,
		metrics.WithLogger(logger), metrics.WithPprof(f.Admin.Pprof))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("telemetry: admin listener: %w", err)
	}
	logger.Info("admin listener", zap.String("metrics",
		"http://"+k.admin.Addr().String()+"/metrics"))
	go func() {
		defer close(k.done)
		if err := k.admin.Run(ctx); err != nil {
			logger.Warn("admin listener stopped", zap.Error(err))
		}
	}()

	return k, nil
}

// AdminAddr is the address the admin listener is bound to, nil when it is
// off. With port 0 in the flag it tells where /metrics ended up.
func (k *Kit) AdminAddr() net.Addr {
	if k.admin == nil {
		return nil
	}

	return k.admin.Addr()
}

// TrackCertificates reports the expiry of the leaf certificate of src (as
// name) and of the first CA it trusts (as name + "-ca") on every scrape of
// gatehouse_certificate_expiry_seconds.
func (k *Kit) TrackCertificates(name string, src *certsource.Source) {
	k.CertExpiry.Track(name, func() (time.Time, bool) {
		b := src.Bundle()
		if b == nil || b.Certificate == nil || b.Certificate.Leaf == nil {
			return time.Time{}, false
		}
		return b.Certificate.Leaf.NotAfter, true
	})
	k.CertExpiry.Track(name+"-ca", func() (time.Time, bool) {
		b := src.Bundle()
		if b == nil || len(b.CAs) == 0 {
			return time.Time{}, false
		}
		return b.CAs[0].NotAfter, true
	})
}

// DiscoveryHook returns a discovery.WithChangeHook function that sets the
// healthy-endpoints gauge of each service and records a discovery_change
// event naming the instances that came and went.
func (k *Kit) DiscoveryHook() func(service string, instanceIDs []string) {
	var mu sync.Mutex
	last := map[string][]string{}

	return func(service string, ids []string) {
		mu.Lock()
		prev := last[service]
		last[service] = append([]string(nil), ids...)
		mu.Unlock()

		k.Endpoints.SetHealthy(service, len(ids))
		k.Events.DiscoveryChange(context.Background(), securityevent.DiscoveryChange{
			Service: service,
			Healthy: len(ids),
			Added:   missingFrom(ids, prev),
			Removed: missingFrom(prev, ids),
		})
	}
}

// missingFrom lists the items of a that are not in b.
func missingFrom(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}

	return out
}

// Close stops the admin listener and flushes spans, waiting at most 5s.
func (k *Kit) Close() error {
	k.cancel()
	<-k.done

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	return errors.Join(k.Tracing.Shutdown(ctx))
}
