package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

const (
	// DefaultCheckInterval is how often Consul runs the gRPC health check.
	DefaultCheckInterval = time.Second

	// DefaultCheckTimeout bounds one gRPC health check.
	DefaultCheckTimeout = time.Second

	// DefaultDeregisterCriticalAfter is how long an instance may stay
	// critical before Consul removes it. It is also Consul's minimum.
	DefaultDeregisterCriticalAfter = time.Minute

	// minCheckInterval is the shortest interval Consul runs a check at; it
	// silently raises shorter ones.
	minCheckInterval = time.Second

	// maxIDLength bounds instance ids; they end up in URLs and log lines.
	maxIDLength = 128

	// Consul's limits on service metadata.
	metaMaxPairs       = 64
	metaKeyMaxLength   = 128
	metaValueMaxLength = 512
	metaReservedPrefix = "consul-"
)

var (
	// serviceNameRE is a DNS label: lowercase letters, digits and inner
	// hyphens, at most 63 characters.
	serviceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

	// instanceIDRE keeps ids safe to put in a URL path segment.
	instanceIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

	// metaKeyRE is Consul's rule for metadata keys.
	metaKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Registration describes one service instance to register in Consul. Zero
// durations get the Default* values.
type Registration struct {
	// Service is the service name, a DNS label such as "greeter".
	Service string
	// ID identifies this instance among all instances of all services on the
	// agent; see NewInstanceID.
	ID string
	// Address is the literal IP clients and the health check connect to.
	Address string
	// Port is the gRPC port, 1..65535.
	Port int
	// Tags are Consul tags for the instance.
	Tags []string
	// Meta is passed to Consul unchanged, e.g. the version and the served
	// gRPC service names. Consul allows 64 pairs, keys of [A-Za-z0-9_-] up
	// to 128 characters not starting with "consul-", values up to 512.
	Meta map[string]string
	// CheckInterval is how often Consul checks the instance; at least 1s.
	CheckInterval time.Duration
	// CheckTimeout bounds one check.
	CheckTimeout time.Duration
	// DeregisterCriticalAfter is how long the instance may stay critical
	// before Consul removes it; at least one minute.
	DeregisterCriticalAfter time.Duration
	// TLSServerName is the server name the check verifies; needs CheckTLS.
	TLSServerName string
	// CheckTLS makes the health check connect with TLS.
	CheckTLS bool
}

// Registrar registers one service instance with the local Consul agent,
// keeps it registered (Maintain) and removes it again. It is safe for
// concurrent use.
type Registrar struct {
	client *api.Client
	reg    Registration
	opts   options
	logger *zap.Logger
}

// NewInstanceID returns a new instance id for service: the service name, a
// hyphen and 16 random hex digits, e.g. "greeter-9f86d081884c7d65".
func NewInstanceID(service string) string {
	var b [8]byte

	// crypto/rand.Read never fails; see its documentation.
	_, _ = rand.Read(b[:])

	return service + "-" + hex.EncodeToString(b[:])
}

// NewRegistrar validates reg, fills in its defaults and returns a Registrar
// for it. Nothing is sent to Consul until Register.
func NewRegistrar(client *api.Client, reg Registration, opts ...Option) (*Registrar, error) {
	if client == nil {
		return nil, errors.New("new registrar: consul client must not be nil")
	}

	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new registrar: %w", err)
	}

	reg, err = reg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new registrar for service %q instance %q: %w",
			reg.Service, reg.ID, err)
	}

	r := &Registrar{
		client: client,
		reg:    reg,
		opts:   o,
		logger: o.logger.Named("discovery").With(
			zap.String("service", reg.Service), zap.String("instance_id", reg.ID)),
	}

	return r, nil
}

// Registration returns the validated registration, defaults filled in.
func (r *Registrar) Registration() Registration {
	reg := r.reg
	reg.Tags = slices.Clone(r.reg.Tags)
	reg.Meta = maps.Clone(r.reg.Meta)

	return reg
}

// ID returns the instance id.
func (r *Registrar) ID() string {
	return r.reg.ID
}

// Register registers the instance with its gRPC health check, replacing an
// earlier registration with the same id. Consul starts the check as
// critical, so the instance is served to clients once its first check
// passes. Registering again (e.g. after the agent lost its state) is safe.
func (r *Registrar) Register(ctx context.Context) error {
	reg := r.reg
	target := net.JoinHostPort(reg.Address, strconv.Itoa(reg.Port))

	svc := &api.AgentServiceRegistration{
		ID:      reg.ID,
		Name:    reg.Service,
		Address: reg.Address,
		Port:    reg.Port,
		Tags:    reg.Tags,
		Meta:    reg.Meta,
		Check: &api.AgentServiceCheck{
			Name:                           "gRPC health " + target,
			GRPC:                           target,
			GRPCUseTLS:                     reg.CheckTLS,
			TLSServerName:                  reg.TLSServerName,
			Interval:                       reg.CheckInterval.String(),
			Timeout:                        reg.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: reg.DeregisterCriticalAfter.String(),
		},
	}

	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)

	if err := r.client.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return fmt.Errorf("register service %q instance %q at %s: %w",
			reg.Service, reg.ID, target, err)
	}

	r.logger.Info("registered in consul", zap.String("addr", target))

	return nil
}

// Deregister removes the instance and its check from the agent. Removing an
// instance that is not registered is not an error.
func (r *Registrar) Deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)

	err := r.client.Agent().ServiceDeregisterOpts(r.reg.ID, q)

	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusNotFound {
		// Consul answers 404 "Unknown service ID" for an id it does not have.
		r.logger.Debug("not registered in consul; nothing to deregister")

		return nil
	}

	if err != nil {
		return fmt.Errorf("deregister service %q instance %q: %w", r.reg.Service, r.reg.ID, err)
	}

	r.logger.Info("deregistered from consul")

	return nil
}

// withDefaults returns reg with zero values defaulted, or what is wrong.
func (reg Registration) withDefaults() (Registration, error) {
	if err := validateServiceName(reg.Service); err != nil {
		return reg, err
	}

	if err := validateInstanceID(reg.ID); err != nil {
		return reg, err
	}

	if err := validateAddress(reg.Address); err != nil {
		return reg, err
	}

	if reg.Port < 1 || reg.Port > 65535 {
		return reg, fmt.Errorf("port %d out of range 1..65535", reg.Port)
	}

	for i, tag := range reg.Tags {
		if strings.TrimSpace(tag) == "" {
			return reg, fmt.Errorf("tag %d is blank", i)
		}
	}

	if err := validateMeta(reg.Meta); err != nil {
		return reg, err
	}

	reg, err := reg.durationDefaults()
	if err != nil {
		return reg, err
	}

	if reg.TLSServerName != "" && !reg.CheckTLS {
		return reg, fmt.Errorf("tls server name %q set but check tls is off", reg.TLSServerName)
	}

	reg.Tags = slices.Clone(reg.Tags)
	reg.Meta = maps.Clone(reg.Meta)

	return reg, nil
}

func (reg Registration) durationDefaults() (Registration, error) {
	if reg.CheckInterval == 0 {
		reg.CheckInterval = DefaultCheckInterval
	}

	if reg.CheckInterval < minCheckInterval {
		return reg, fmt.Errorf("check interval %v below consul's minimum %v",
			reg.CheckInterval, minCheckInterval)
	}

	if reg.CheckTimeout == 0 {
		reg.CheckTimeout = DefaultCheckTimeout
	}

	if reg.CheckTimeout < 0 {
		return reg, fmt.Errorf("check timeout %v is negative", reg.CheckTimeout)
	}

	if reg.DeregisterCriticalAfter == 0 {
		reg.DeregisterCriticalAfter = DefaultDeregisterCriticalAfter
	}

	if reg.DeregisterCriticalAfter < DefaultDeregisterCriticalAfter {
		return reg, fmt.Errorf("deregister critical after %v below consul's minimum %v",
			reg.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
	}

	return reg, nil
}

func validateServiceName(name string) error {
	if !serviceNameRE.MatchString(name) {
		return fmt.Errorf("service name %q is not a lowercase DNS label "+
			"(a-z, 0-9, inner '-', 1..63 characters)", name)
	}

	return nil
}

func validateInstanceID(id string) error {
	if id == "" {
		return errors.New("instance id is empty")
	}

	if len(id) > maxIDLength || !instanceIDRE.MatchString(id) {
		return fmt.Errorf("instance id %q must be 1..%d characters of "+
			"A-Z, a-z, 0-9, '.', '_', ':', '-' starting with a letter or digit", id, maxIDLength)
	}

	return nil
}

func validateAddress(addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("address %q is not a literal IP: %w", addr, err)
	}

	if ip.IsUnspecified() {
		return fmt.Errorf("address %q is unspecified; register a reachable IP", addr)
	}

	if ip.Zone() != "" {
		return fmt.Errorf("zoned address %q is not supported", addr)
	}

	return nil
}

func validateMeta(meta map[string]string) error {
	if len(meta) > metaMaxPairs {
		return fmt.Errorf("meta has %d pairs, more than consul's %d", len(meta), metaMaxPairs)
	}

	for k, v := range meta {
		if len(k) > metaKeyMaxLength || !metaKeyRE.MatchString(k) {
			return fmt.Errorf("meta key %q must be 1..%d characters of A-Z, a-z, 0-9, '_', '-'",
				k, metaKeyMaxLength)
		}

		if strings.HasPrefix(k, metaReservedPrefix) {
			return fmt.Errorf("meta key %q uses consul's reserved prefix %q",
				k, metaReservedPrefix)
		}

		if len(v) > metaValueMaxLength {
			return fmt.Errorf("meta value for key %q is %d bytes, more than consul's %d",
				k, len(v), metaValueMaxLength)
		}
	}

	return nil
}
