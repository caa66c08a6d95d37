// Package testsupport holds helpers shared by tests that need real
// infrastructure, such as a Consul agent.
package testsupport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
)

// ConsulBinEnv names the environment variable that overrides the path of the
// consul binary used by StartConsul.
const ConsulBinEnv = "CONSUL_BIN"

// consulStartTimeout bounds how long StartConsul waits for the agent.
const consulStartTimeout = 60 * time.Second

// maxAgentLog is how much of the agent's most recent output is kept for the
// test log.
const maxAgentLog = 256 << 10

// StartConsul starts a consul dev agent for the test and stops it when the
// test and its subtests are done. The binary comes from $CONSUL_BIN, or else
// from bin/consul under the repository root. A missing binary fails the test:
// these tests are meant to run, not to be skipped. The agent's output is
// logged only when the test fails.
func StartConsul(t testing.TB) *consulagent.Agent {
	t.Helper()

	return StartConsulWith(t, consulagent.Config{})
}

// StartConsulWith is StartConsul with a base configuration, e.g. for a
// DataDir or ExtraHCL. Bin is filled in when empty; the agent output is kept
// for the test log in addition to any LogOutput given.
func StartConsulWith(t testing.TB, cfg consulagent.Config) *consulagent.Agent {
	t.Helper()

	if cfg.Bin == "" {
		bin, err := ConsulBin()
		if err != nil {
			t.Fatalf("consul binary not available: %v", err)
		}

		cfg.Bin = bin
	}

	out := &logBuffer{max: maxAgentLog}
	if cfg.LogOutput == nil {
		cfg.LogOutput = out
	} else {
		cfg.LogOutput = io.MultiWriter(out, cfg.LogOutput)
	}

	ctx, cancel := context.WithTimeout(context.Background(), consulStartTimeout)
	defer cancel()

	agent, err := consulagent.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start consul agent with %s: %v\nagent output:\n%s", cfg.Bin, err, out)
	}

	t.Cleanup(func() {
		if err := agent.Stop(); err != nil {
			t.Errorf("stop consul agent: %v", err)
		}

		if t.Failed() {
			t.Logf("consul agent output (last %d KiB at most):\n%s", maxAgentLog>>10, out)
		}
	})

	return agent
}

// NewConsul prepares a consul dev agent for the test without starting it:
// its addresses are known at once, and agent.Start starts it. This is for
// tests of clients started before Consul. The agent is stopped when the
// test ends, and its output logged when the test failed.
func NewConsul(t testing.TB, cfg consulagent.Config) *consulagent.Agent {
	t.Helper()

	if cfg.Bin == "" {
		bin, err := ConsulBin()
		if err != nil {
			t.Fatalf("consul binary not available: %v", err)
		}

		cfg.Bin = bin
	}

	out := &logBuffer{max: maxAgentLog}
	if cfg.LogOutput == nil {
		cfg.LogOutput = out
	} else {
		cfg.LogOutput = io.MultiWriter(out, cfg.LogOutput)
	}

	agent, err := consulagent.New(cfg)
	if err != nil {
		t.Fatalf("prepare consul agent with %s: %v", cfg.Bin, err)
	}

	t.Cleanup(func() {
		if err := agent.Stop(); err != nil {
			t.Errorf("stop consul agent: %v", err)
		}

		if t.Failed() {
			t.Logf("consul agent output (last %d KiB at most):\n%s", maxAgentLog>>10, out)
		}
	})

	return agent
}

// ConsulBin returns the consul binary tests should use: $CONSUL_BIN if set,
// else bin/consul under the repository root. It fails if the file is absent.
func ConsulBin() (string, error) {
	if bin := os.Getenv(ConsulBinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("check $%s=%q: %w", ConsulBinEnv, bin, err)
		}

		return bin, nil
	}

	root, err := RepoRoot()
	if err != nil {
		return "", err
	}

	bin := filepath.Join(root, "bin", "consul")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("check %q (build it, or set $%s): %w", bin, ConsulBinEnv, err)
	}

	return bin, nil
}

// RepoRoot returns the nearest directory at or above the working directory
// that holds a go.mod file.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}

	for dir := wd; ; dir = filepath.Dir(dir) {
		_, err := os.Stat(filepath.Join(dir, "go.mod"))
		if err == nil {
			return dir, nil
		}

		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("look for go.mod in %q: %w", dir, err)
		}

		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod at or above %q", wd)
		}
	}
}

// logBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

// Write implements io.Writer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}

	return len(p), nil
}

// String returns the kept output.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return string(b.buf)
}
