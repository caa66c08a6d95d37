//go:build unix

// Package consulagent starts and stops a real `consul agent -dev` process for
// tests and local development.
//
// Every listener of the agent gets its own free port on 127.0.0.1, the agent
// binds to and advertises 127.0.0.1 only, and the process runs in its own
// process group so that Stop leaves nothing behind. An agent is a single-node
// cluster with an in-memory Raft store (that is what -dev means), so the
// catalog starts empty on every start, Restart included.
package consulagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

const (
	// startTimeout bounds how long a start waits for the agent to be ready
	// when ctx has no earlier deadline.
	startTimeout = 60 * time.Second

	// stopGrace is how long the agent gets to exit after SIGTERM before it is
	// sent SIGKILL.
	stopGrace = 10 * time.Second

	// pollInterval is the pause between readiness probes.
	pollInterval = 50 * time.Millisecond

	// probeTimeout bounds a single readiness probe request.
	probeTimeout = 2 * time.Second

	// startAttempts is how often Start picks new ports when the agent failed
	// because a port was taken between picking and binding.
	startAttempts = 3
)

// errPortInUse marks a start that failed because a port was already bound.
var errPortInUse = errors.New("port already in use")

// Config says how to run the agent.
type Config struct {
	// Bin is the path of the consul binary. Required.
	Bin string

	// Logger receives lifecycle messages. Nil means zap.NewNop().
	Logger *zap.Logger

	// LogOutput receives the agent's stdout and stderr. Nil discards them.
	// Writes to it are serialised; its errors are ignored.
	LogOutput io.Writer

	// ExtraHCL is more agent configuration, e.g. TLS settings. It is written
	// to a second config file loaded after the generated one, so it is merged
	// over the generated settings and may override them.
	ExtraHCL string

	// DataDir, when set, is the agent's data_dir. The Raft store of a -dev
	// agent is in memory regardless, but with a data dir the agent keeps its
	// own service and check registrations across Restart and re-syncs them
	// into the fresh catalog. Empty means nothing survives a restart.
	DataDir string

	// EnableHTTPS turns on the HTTPS listener on Ports().HTTPS. It needs TLS
	// settings in ExtraHCL to be useful. Off means ports.https = -1.
	EnableHTTPS bool

	// EnableGRPCTLS turns on the TLS gRPC listener on Ports().GRPCTLS. Off
	// means ports.grpc_tls = -1, which also keeps a -dev agent off its
	// default port 8503.
	EnableGRPCTLS bool
}

// Agent is a running (or stopped) consul dev agent. Its methods are safe for
// concurrent use.
type Agent struct {
	cfg    Config
	ports  Ports
	logger *zap.Logger

	mu      sync.Mutex
	proc    *process
	confDir string
}

// Start validates cfg, starts a consul dev agent on free loopback ports and
// waits until it has elected itself leader and registered its node. It gives
// up when ctx is done or after a minute, whichever comes first, and then
// leaves no process behind.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start consul agent: %w", err)
	}

	cfg, err := validate(cfg)
	if err != nil {
		return nil, err
	}

	logger := cfg.Logger.Named("consulagent")

	var lastErr error

	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := pickPorts()
		if err != nil {
			return nil, err
		}

		a := &Agent{cfg: cfg, ports: ports, logger: logger}

		err = a.launch(ctx)
		if err == nil {
			return a, nil
		}

		if !errors.Is(err, errPortInUse) {
			return nil, err
		}

		lastErr = err
		logger.Warn("consul agent lost a port race; retrying with new ports",
			zap.Int("attempt", attempt), zap.Error(err))
	}

	return nil, fmt.Errorf("start consul agent after %d attempts: %w", startAttempts, lastErr)
}

// New validates cfg and picks free loopback ports for an agent without
// starting it; the agent's addresses are known at once, and Start starts
// it. Tests use it to start clients of Consul before Consul itself.
//
// Limitation: the ports are free when picked but not held until Start, so
// another process may take one in between; Start then fails instead of
// picking new ports, since the addresses have already been handed out.
func New(cfg Config) (*Agent, error) {
	cfg, err := validate(cfg)
	if err != nil {
		return nil, err
	}

	ports, err := pickPorts()
	if err != nil {
		return nil, err
	}

	return &Agent{cfg: cfg, ports: ports, logger: cfg.Logger.Named("consulagent")}, nil
}

// Start starts a stopped agent (one from New, or one stopped with Stop) on
// its ports and waits until it is ready, as the package's Start does. On
// failure the agent is left stopped. Starting a running agent does nothing.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	if a.proc != nil {
		return nil
	}

	if err := a.launchLocked(ctx); err != nil {
		return fmt.Errorf("start consul agent on %s: %w", a.HTTPAddr(), err)
	}

	return nil
}

// validate checks cfg and fills in defaults.
func validate(cfg Config) (Config, error) {
	if cfg.Bin == "" {
		return cfg, errors.New("consul binary path is required")
	}

	info, err := os.Stat(cfg.Bin)
	if err != nil {
		return cfg, fmt.Errorf("check consul binary %q: %w", cfg.Bin, err)
	}

	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return cfg, fmt.Errorf("consul binary %q is not an executable file", cfg.Bin)
	}

	if cfg.DataDir != "" {
		abs, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return cfg, fmt.Errorf("resolve data dir %q: %w", cfg.DataDir, err)
		}

		cfg.DataDir = abs
	}

	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	return cfg, nil
}

// HTTPAddr returns the HTTP API address as "127.0.0.1:port".
func (a *Agent) HTTPAddr() string {
	return hostPort(a.ports.HTTP)
}

// HTTPSAddr returns the HTTPS API address, or "" when HTTPS is disabled.
func (a *Agent) HTTPSAddr() string {
	if !a.cfg.EnableHTTPS {
		return ""
	}

	return hostPort(a.ports.HTTPS)
}

// UIURL returns the URL of the web UI.
func (a *Agent) UIURL() string {
	return "http://" + a.HTTPAddr() + "/ui/"
}

// Ports returns every port reserved for the agent. They stay the same
// across Restart.
func (a *Agent) Ports() Ports {
	return a.ports
}

// PID returns the process id of the running agent, or 0 when stopped.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()

	if a.proc == nil {
		return 0
	}

	return a.proc.pid()
}

// Client returns a new API client for the agent's HTTP address.
func (a *Agent) Client() (*api.Client, error) {
	client, err := newClient(a.HTTPAddr())
	if err != nil {
		return nil, err
	}

	return client, nil
}

// Stop terminates the agent: SIGTERM to its process group, SIGKILL if it has
// not exited within a bound, then it waits for the exit. Calling Stop on a
// stopped agent does nothing.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()

	return a.stopLocked()
}

// Restart stops the agent if it runs and starts it again on the same ports,
// waiting for readiness as Start does. On failure the agent is left stopped.
func (a *Agent) Restart(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	if err := a.stopLocked(); err != nil {
		return fmt.Errorf("restart consul agent on %s: %w", a.HTTPAddr(), err)
	}

	if err := a.launchLocked(ctx); err != nil {
		return fmt.Errorf("restart consul agent on %s: %w", a.HTTPAddr(), err)
	}

	return nil
}

func (a *Agent) stopLocked() error {
	if a.proc == nil {
		return nil
	}

	pid := a.proc.pid()
	err := a.proc.stop(stopGrace)

	a.proc = nil
	a.removeConfDir()

	if err != nil {
		return fmt.Errorf("stop consul agent pid %d: %w", pid, err)
	}

	a.logger.Info("consul agent stopped", zap.Int("pid", pid))

	return nil
}

func (a *Agent) launch(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	return a.launchLocked(ctx)
}

// launchLocked writes the config files, starts the process and waits until
// the agent is ready. On failure nothing is left running.
func (a *Agent) launchLocked(ctx context.Context) error {
	args, err := a.writeConfig()
	if err != nil {
		return err
	}

	tail := newTailBuffer(tailSize)

	var out io.Writer = tail
	if a.cfg.LogOutput != nil {
		out = io.MultiWriter(tail, forgivingWriter{a.cfg.LogOutput})
	}

	proc, err := startProcess(a.cfg.Bin, args, out)
	if err != nil {
		a.removeConfDir()
		return err
	}

	a.logger.Info("consul agent started; waiting for a leader",
		zap.Int("pid", proc.pid()), zap.String("http_addr", a.HTTPAddr()))

	started := time.Now()

	if err := a.waitReady(ctx, proc, tail); err != nil {
		// No grace: an agent still starting up logs SIGTERM and ignores it.
		if stopErr := proc.stop(0); stopErr != nil {
			a.logger.Error("stop consul agent that failed to start", zap.Error(stopErr))
		}

		a.removeConfDir()

		return err
	}

	a.proc = proc
	a.logger.Info("consul agent ready",
		zap.Int("pid", proc.pid()), zap.Duration("took", time.Since(started)))

	return nil
}

// writeConfig writes the generated (and the extra) config file into a new
// temporary directory and returns the agent's command line arguments.
func (a *Agent) writeConfig() ([]string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-consul-*")
	if err != nil {
		return nil, fmt.Errorf("create consul config dir: %w", err)
	}

	a.confDir = dir

	hcl := renderHCL(a.ports, a.cfg.DataDir, a.cfg.EnableHTTPS, a.cfg.EnableGRPCTLS)
	base := filepath.Join(dir, "agent.hcl")

	if err := os.WriteFile(base, []byte(hcl), 0o600); err != nil {
		a.removeConfDir()
		return nil, fmt.Errorf("write consul config %q: %w", base, err)
	}

	args := []string{"agent", "-dev", "-config-file=" + base}

	if a.cfg.ExtraHCL != "" {
		extra := filepath.Join(dir, "extra.hcl")

		if err := os.WriteFile(extra, []byte(a.cfg.ExtraHCL), 0o600); err != nil {
			a.removeConfDir()
			return nil, fmt.Errorf("write consul config %q: %w", extra, err)
		}

		args = append(args, "-config-file="+extra)
	}

	return args, nil
}

func (a *Agent) removeConfDir() {
	if a.confDir == "" {
		return
	}

	if err := os.RemoveAll(a.confDir); err != nil {
		a.logger.Warn("remove consul config dir", zap.String("dir", a.confDir), zap.Error(err))
	}

	a.confDir = ""
}

// waitReady polls the agent until it reports a leader, answers its self
// endpoint and has its own node in the catalog. It fails as soon as the
// process exits, ctx is done or the start timeout passes.
func (a *Agent) waitReady(ctx context.Context, proc *process, tail *tailBuffer) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	client, err := newClient(a.HTTPAddr())
	if err != nil {
		return err
	}

	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()

	var probeErr error

	for {
		select {
		case <-proc.done:
			return exitedEarly(proc, tail)
		case <-ctx.Done():
			err := fmt.Errorf("wait for consul agent on %s to be ready: %w", a.HTTPAddr(), ctx.Err())
			if probeErr != nil {
				err = fmt.Errorf("%w (last probe: %w)", err, probeErr)
			}

			return err
		case <-ticker.C:
		}

		probeErr = probeReady(ctx, client)
		if probeErr == nil {
			return nil
		}
	}
}

// exitedEarly describes an agent that exited while starting, with the tail
// of its output since that is where Consul says why.
func exitedEarly(proc *process, tail *tailBuffer) error {
	out := tail.String()

	status := proc.exitErr()
	if status == nil {
		status = errors.New("exit status 0")
	}

	err := fmt.Errorf("consul agent exited before becoming ready: %w; last output:\n%s",
		status, out)
	if strings.Contains(out, "address already in use") {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}

	return err
}

// probeReady returns nil once the agent is usable.
func probeReady(ctx context.Context, client *api.Client) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()

	q := (&api.QueryOptions{}).WithContext(ctx)

	leader, err := client.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return fmt.Errorf("query leader: %w", err)
	}

	if leader == "" {
		return errors.New("no leader yet")
	}

	var self map[string]any
	if _, err := client.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return fmt.Errorf("query agent self: %w", err)
	}

	node, _, err := client.Catalog().Node(nodeName, q)
	if err != nil {
		return fmt.Errorf("query catalog node %q: %w", nodeName, err)
	}

	if node == nil || node.Node == nil {
		return fmt.Errorf("node %q not in catalog yet", nodeName)
	}

	return nil
}

func newClient(addr string) (*api.Client, error) {
	client, err := api.NewClient(&api.Config{Address: addr, Scheme: "http"})
	if err != nil {
		return nil, fmt.Errorf("create consul api client for %s: %w", addr, err)
	}

	return client, nil
}

func hostPort(port int) string {
	return loopback + ":" + strconv.Itoa(port)
}
