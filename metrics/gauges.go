package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoints is the gauge gatehouse_discovery_healthy_endpoints{service}: how
// many healthy instances of each service discovery currently sees. The
// resolver calls SetHealthy on every update. It is safe for concurrent use.
type Endpoints struct {
	gauge *prometheus.GaugeVec
}

// NewEndpoints returns the healthy-endpoints gauge registered with reg.
func NewEndpoints(reg prometheus.Registerer) (*Endpoints, error) {
	e := &Endpoints{gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_discovery_healthy_endpoints",
		Help: "Healthy endpoints of each service as seen by discovery.",
	}, []string{"service"})}
	if err := register(reg, e.gauge); err != nil {
		return nil, err
	}

	return e, nil
}

// SetHealthy records that service has n healthy endpoints.
func (e *Endpoints) SetHealthy(service string, n int) {
	e.gauge.WithLabelValues(service).Set(float64(n))
}

// CertExpiry is the gauge gatehouse_certificate_expiry_seconds{cert}: the
// seconds left until each of our certificates expires, negative once
// expired. The value is computed at scrape time, so it keeps falling between
// rotations without anyone calling Set. It is safe for concurrent use.
type CertExpiry struct {
	desc *prometheus.Desc
	now  func() time.Time

	// mu guards notAfter and tracked.
	mu       sync.Mutex
	notAfter map[string]time.Time
	tracked  map[string]func() (time.Time, bool)
}

var _ prometheus.Collector = (*CertExpiry)(nil)

// NewCertExpiry returns the certificate-expiry gauge registered with reg.
func NewCertExpiry(reg prometheus.Registerer, opts ...Option) (*CertExpiry, error) {
	o := newOptions(opts)
	c := &CertExpiry{
		desc: prometheus.NewDesc("gatehouse_certificate_expiry_seconds",
			"Seconds until each of our certificates expires.", []string{"cert"}, nil),
		now:      o.now,
		notAfter: make(map[string]time.Time),
		tracked:  make(map[string]func() (time.Time, bool)),
	}
	if err := register(reg, c); err != nil {
		return nil, err
	}

	return c, nil
}

// Set records the expiry of the certificate called name; call it at load
// and at every rotation.
func (c *CertExpiry) Set(name string, notAfter time.Time) {
	c.mu.Lock()
	c.notAfter[name] = notAfter
	c.mu.Unlock()
}

// Track reports the certificate called name by asking notAfter at every
// scrape, so a certificate that rotates from files needs no Set calls.
// notAfter reports false while there is no certificate yet.
func (c *CertExpiry) Track(name string, notAfter func() (time.Time, bool)) {
	c.mu.Lock()
	c.tracked[name] = notAfter
	c.mu.Unlock()
}

// Delete stops reporting the certificate called name.
func (c *CertExpiry) Delete(name string) {
	c.mu.Lock()
	delete(c.notAfter, name)
	delete(c.tracked, name)
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *CertExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *CertExpiry) Collect(ch chan<- prometheus.Metric) {
	now := c.now()

	c.mu.Lock()
	expiries := make(map[string]time.Time, len(c.notAfter)+len(c.tracked))
	for name, notAfter := range c.notAfter {
		expiries[name] = notAfter
	}
	for name, fn := range c.tracked {
		if notAfter, ok := fn(); ok {
			expiries[name] = notAfter
		}
	}
	c.mu.Unlock()

	ms := make([]prometheus.Metric, 0, len(expiries))
	for name, notAfter := range expiries {
		ms = append(ms, prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue,
			notAfter.Sub(now).Seconds(), name))
	}

	for _, m := range ms {
		ch <- m
	}
}
