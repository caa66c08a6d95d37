// Package devstack starts the whole Gatehouse platform on 127.0.0.1 as real
// processes: a Consul dev agent, catalog instances, one orders instance and
// the gateway. `make run` (cmd/gatehouse-dev) and the end-to-end tests use
// it, so what the tests exercise is what a developer runs.
//
// Every gRPC hop is mutual TLS: Start first makes sure a development PKI
// (see package pki) holds a CA and a certificate for each service and for
// Consul's agent, which presents the "consul" identity for its gRPC health
// checks.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
	"github.com/gatehouse-dev/gatehouse/internal/freeport"
	"github.com/gatehouse-dev/gatehouse/pki"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// Config describes the stack to start.
type Config struct {
	// BinDir holds the catalog, orders and gateway binaries.
	BinDir string
	// ConsulBin is the consul binary.
	ConsulBin string
	// GatewayAddr is the gateway's HTTP address; port 0 picks a free one.
	GatewayAddr string
	// GatewayAdminAddr is the gateway's admin (metrics) listener; empty
	// keeps the gateway's default. Tests that may run next to another
	// stack pick a free port.
	GatewayAdminAddr string
	// GatewayArgs are appended to the gateway's command line, e.g. to
	// point it at other rate limits.
	GatewayArgs []string
	// IssuerAddr is the dev OAuth 2.0 issuer's address; port 0 (the
	// default) picks a free one.
	IssuerAddr string
	// Catalogs is the number of catalog instances (default 2).
	Catalogs int
	// StepInterval is how long orders stay in each status (default 3s).
	StepInterval time.Duration
	// LogFormat is passed to every service: json or console.
	LogFormat string
	// Output receives every service's output, each line prefixed with the
	// process name; nil discards it.
	Output io.Writer
	// ConsulOutput receives the Consul agent's output; nil means Output.
	ConsulOutput io.Writer
	// Logger records what the stack does; nil means no logging.
	Logger *zap.Logger
	// CertDir holds the development PKI (layout of pki.Dir); what is missing
	// or expiring is created there. Empty means a temporary directory that
	// Stop removes.
	CertDir string
	// TrustDomain is the trust domain of every identity; empty means
	// identity.DefaultTrustDomain.
	TrustDomain string
}

// stopGrace is how long Stop gives each process to exit after SIGTERM: an
// instance waits up to 5s to leave Consul's passing set and up to 10s to
// drain, by default.
const stopGrace = 20 * time.Second

// pkiServices are the identities the stack needs: its three services and
// Consul's agent.
var pkiServices = []string{"catalog", "orders", "gateway", "consul"}

func (c *Config) setDefaults() {
	if c.IssuerAddr == "" {
		c.IssuerAddr = "127.0.0.1:0"
	}
	if c.GatewayAddr == "" {
		c.GatewayAddr = "127.0.0.1:0"
	}
	if c.Catalogs == 0 {
		c.Catalogs = 2
	}
	if c.StepInterval == 0 {
		c.StepInterval = 3 * time.Second
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
	if c.Output == nil {
		c.Output = io.Discard
	}
	if c.ConsulOutput == nil {
		c.ConsulOutput = c.Output
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.TrustDomain == "" {
		c.TrustDomain = identity.DefaultTrustDomain
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	for _, name := range []string{"catalog", "orders", "gateway", "devissuer"} {
		if _, err := os.Stat(filepath.Join(c.BinDir, name)); err != nil {
			return fmt.Errorf("devstack: binary %s: %w", name, err)
		}
	}
	if c.Catalogs < 1 {
		return fmt.Errorf("devstack: need at least one catalog instance, got %d", c.Catalogs)
	}
	if err := identity.ValidateTrustDomain(c.TrustDomain); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}

	return nil
}

// Stack is a running platform. Stop it with Stop.
type Stack struct {
	cfg Config
	// Consul is the dev agent every process registers with.
	Consul *consulagent.Agent
	// GatewayURL is the base URL of the gateway, e.g. http://127.0.0.1:8080.
	GatewayURL string
	// gatewayAddr is GatewayURL's host:port.
	gatewayAddr string
	// IssuerURL is the dev OAuth 2.0 issuer, e.g. http://127.0.0.1:8081;
	// every service accepts the tokens it issues.
	IssuerURL string
	// CertDir holds the stack's development PKI.
	CertDir string

	// tempCertDir is set when Start created CertDir and Stop removes it.
	tempCertDir bool

	mu    sync.Mutex
	procs []*Process
	// died carries the first process that ended unasked (see Died).
	died chan *Process
}

// Start starts Consul, the services and the gateway, and returns once all
// are passing in Consul and the gateway answers /readyz, or ctx ends.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	s, err := Prepare(cfg)
	if err != nil {
		return nil, err
	}

	steps := []func() error{
		func() error { return s.Consul.Start(ctx) },
		s.startIssuer,
		s.StartServices,
		s.StartGateway,
		func() error { return s.WaitReady(ctx, s.cfg.Catalogs, 1) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}

	return s, nil
}

// Prepare makes sure of the stack's PKI and picks the addresses of the
// Consul agent and the gateway, but starts nothing: start the parts with
// Consul.Start, StartIssuer, StartServices and StartGateway in any order,
// e.g. the gateway before Consul. Stop stops whatever was started.
//
// Limitation: Consul's ports are free when picked but not held, so another
// process may take one before Consul.Start, which then fails.
func Prepare(cfg Config) (*Stack, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	certDir, temp, err := preparePKI(cfg)
	if err != nil {
		return nil, err
	}

	agent, err := consulagent.New(consulagent.Config{
		Bin:       cfg.ConsulBin,
		Logger:    cfg.Logger,
		LogOutput: newPrefixWriter(cfg.ConsulOutput, "consul"),
		ExtraHCL:  consulTLS(pki.Dir(certDir)),
	})
	if err != nil {
		if temp {
			_ = os.RemoveAll(certDir)
		}
		return nil, err
	}
	s := &Stack{cfg: cfg, Consul: agent, CertDir: certDir, tempCertDir: temp,
		died: make(chan *Process, 1)}

	gwAddr, err := resolvePort(cfg.GatewayAddr)
	if err != nil {
		_ = s.Stop()
		return nil, err
	}
	s.gatewayAddr = gwAddr
	s.GatewayURL = "http://" + gwAddr

	return s, nil
}

// StartIssuer starts the dev OAuth 2.0 issuer whose tokens every service
// accepts. Start it before the processes that must trust it.
func (s *Stack) StartIssuer() error {
	return s.startIssuer()
}

// StartServices starts the catalog instances (catalog-1, catalog-2, …) and
// orders-1. They wait for Consul and for each other as needed.
func (s *Stack) StartServices() error {
	for i := 1; i <= s.cfg.Catalogs; i++ {
		if _, err := s.StartProcess(fmt.Sprintf("catalog-%d", i), "catalog"); err != nil {
			return err
		}
	}
	if _, err := s.StartProcess("orders-1", "orders",
		"-step-interval", s.cfg.StepInterval.String()); err != nil {
		return err
	}

	return nil
}

// StartGateway starts the gateway, called "gateway", on GatewayURL.
func (s *Stack) StartGateway() error {
	args := []string{"-listen", s.gatewayAddr}
	if s.cfg.GatewayAdminAddr != "" {
		args = append(args, "-admin-listen", s.cfg.GatewayAdminAddr)
	}

	_, err := s.StartProcess("gateway", "gateway", append(args, s.cfg.GatewayArgs...)...)

	return err
}

// StartProcess starts binary from BinDir as a process called name, pointed
// at the stack's Consul agent, with args appended.
func (s *Stack) StartProcess(name, binary string, args ...string) (*Process, error) {
	argv := append([]string{
		"-consul", s.Consul.HTTPAddr(),
		"-log-format", s.cfg.LogFormat,
		"-cert-dir", s.CertDir,
		"-trust-domain", s.cfg.TrustDomain,
		"-jwt-issuer", s.IssuerURL,
	}, args...)

	return s.spawn(name, binary, argv)
}

// spawn starts binary from BinDir with exactly argv.
func (s *Stack) spawn(name, binary string, argv []string) (*Process, error) {
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, binary), argv...)
	out := newPrefixWriter(s.cfg.Output, name)
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, and SIGTERM if this process dies first, so no
	// instance outlives the stack.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("devstack: start %s: %w", name, err)
	}

	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)

		if !p.stopped.Load() {
			select {
			case s.died <- p:
			default: // an earlier death is being reported already
			}
		}
	}()

	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()

	return p, nil
}

// Died receives the first process of the stack that ends without having
// been signalled through Process.Signal or Stop: a crash, or a kill from
// outside. make run watches it so that it stops, and says why, rather than
// serving half a platform.
func (s *Stack) Died() <-chan *Process { return s.died }

// Process returns the process with the given name, or nil.
func (s *Stack) Process(name string) *Process {
	s.mu.Lock()
	defer s.mu.Unlock()

	for _, p := range s.procs {
		if p.Name == name {
			return p
		}
	}

	return nil
}

// WaitReady waits until Consul lists the given numbers of passing catalog
// and orders instances and the gateway's /readyz answers 200.
func (s *Stack) WaitReady(ctx context.Context, catalogs, orders int) error {
	client, err := s.Consul.Client()
	if err != nil {
		return err
	}

	want := map[string]int{"catalog": catalogs, "orders": orders}
	httpClient := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()

	for {
		state := s.readiness(ctx, client, httpClient, want)
		if state == "" {
			return nil
		}

		if dead := s.exited(); dead != "" {
			return fmt.Errorf("devstack: %s exited while waiting for readiness", dead)
		}

		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: not ready (%s): %w", state, ctx.Err())
		case <-tick.C:
		}
	}
}

// readiness returns "" when ready, else what is still missing.
func (s *Stack) readiness(
	ctx context.Context,
	client *api.Client,
	httpClient *http.Client,
	want map[string]int,
) string {
	for svc, n := range want {
		entries, _, err := client.Health().Service(svc, "", true,
			(&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Sprintf("consul health of %s: %v", svc, err)
		}
		if len(entries) != n {
			return fmt.Sprintf("%d of %d %s instances passing", len(entries), n, svc)
		}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL+"/readyz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "gateway not answering"
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("gateway /readyz answers %d", resp.StatusCode)
	}

	return ""
}

func (s *Stack) exited() string {
	s.mu.Lock()
	defer s.mu.Unlock()

	for _, p := range s.procs {
		if p.Exited() && !p.stopped.Load() {
			return p.Name
		}
	}

	return ""
}

// Stop sends SIGTERM to every process at once, waits for each (up to 20s,
// then SIGKILL), and stops the Consul agent last so the services can leave
// its passing set and deregister. It returns every error met.
func (s *Stack) Stop() error {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()

	// In parallel: each instance's orderly shutdown takes a check interval
	// or two of waiting for Consul.
	stopErrs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopErrs[i] = p.Stop(stopGrace)
		}()
	}
	wg.Wait()

	errs := slices.DeleteFunc(stopErrs, func(err error) bool { return err == nil })
	if s.Consul != nil {
		if err := s.Consul.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tempCertDir {
		if err := os.RemoveAll(s.CertDir); err != nil {
			errs = append(errs, fmt.Errorf("devstack: remove %s: %w", s.CertDir, err))
		}
	}

	return errors.Join(errs...)
}

// resolvePort turns a port-0 address into one with a free port.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("devstack: address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}

	free, err := freeport.Addr(host)
	if err != nil {
		return "", fmt.Errorf("devstack: find a free port on %s: %w", host, err)
	}

	return free, nil
}
