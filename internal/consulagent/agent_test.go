//go:build unix

package consulagent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

// waitFor polls cond every 50ms until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()

	deadline := time.Now().Add(timeout)

	for {
		err := cond()
		if err == nil {
			return
		}

		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}

		time.Sleep(50 * time.Millisecond)
	}
}

// processGone reports whether no process with pid exists any more.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStartValidation(t *testing.T) {
	dir := t.TempDir()

	notExec := filepath.Join(dir, "consul-not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatalf("write %s: %v", notExec, err)
	}

	tests := []struct {
		name string
		bin  string
		want string
	}{
		{name: "empty", bin: "", want: "consul binary path is required"},
		{name: "missing", bin: filepath.Join(dir, "nope"), want: "no such file"},
		{name: "directory", bin: dir, want: "not an executable file"},
		{name: "not executable", bin: notExec, want: "not an executable file"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent, err := consulagent.Start(context.Background(), consulagent.Config{Bin: tt.bin})
			if err == nil {
				_ = agent.Stop()
				t.Fatalf("Start(%q) succeeded, want error containing %q", tt.bin, tt.want)
			}

			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start(%q) error = %q, want it to contain %q", tt.bin, err, tt.want)
			}
		})
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()

	start := time.Now()
	agent := testsupport.StartConsul(t)
	t.Logf("agent ready after %v", time.Since(start))

	ports := agent.Ports()
	if got, want := agent.HTTPAddr(), "127.0.0.1:"+strconv.Itoa(ports.HTTP); got != want {
		t.Errorf("HTTPAddr() = %q, want %q", got, want)
	}

	if got := agent.HTTPSAddr(); got != "" {
		t.Errorf("HTTPSAddr() = %q, want empty with HTTPS disabled", got)
	}

	client, err := agent.Client()
	if err != nil {
		t.Fatalf("Client(): %v", err)
	}

	leader, err := client.Status().Leader()
	if err != nil {
		t.Fatalf("query leader: %v", err)
	}

	if want := "127.0.0.1:" + strconv.Itoa(ports.Server); leader != want {
		t.Errorf("leader = %q, want %q", leader, want)
	}

	checkUI(t, agent.UIURL())

	pid := agent.PID()
	if pid == 0 {
		t.Fatalf("PID() = 0 for a running agent")
	}

	checkListeners(t, pid, ports)

	stopStart := time.Now()
	if err := agent.Stop(); err != nil {
		t.Fatalf("Stop(): %v", err)
	}

	t.Logf("Stop took %v", time.Since(stopStart))

	if !processGone(pid) {
		t.Errorf("agent process %d still exists after Stop", pid)
	}

	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists after Stop (kill -0: %v)", pid, err)
	}

	if got := agent.PID(); got != 0 {
		t.Errorf("PID() after Stop = %d, want 0", got)
	}

	if _, err := client.Status().Leader(); err == nil {
		t.Errorf("agent HTTP API still answers after Stop")
	}

	if err := agent.Stop(); err != nil {
		t.Errorf("second Stop(): %v", err)
	}
}

func TestEnableTLSListeners(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsulWith(t, consulagent.Config{
		EnableHTTPS:   true,
		EnableGRPCTLS: true,
	})

	ports := agent.Ports()
	if got, want := agent.HTTPSAddr(), "127.0.0.1:"+strconv.Itoa(ports.HTTPS); got != want {
		t.Errorf("HTTPSAddr() = %q, want %q", got, want)
	}

	checkListeners(t, agent.PID(), ports, ports.HTTPS, ports.GRPCTLS)
}

func checkUI(t *testing.T, url string) {
	t.Helper()

	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/ui/") {
		t.Errorf("UIURL() = %q, want http://127.0.0.1:<port>/ui/", url)
	}

	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}

	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
}

func TestRestartKeepsPortsAndLocalServices(t *testing.T) {
	t.Parallel()

	agent := testsupport.StartConsulWith(t, consulagent.Config{DataDir: t.TempDir()})

	client, err := agent.Client()
	if err != nil {
		t.Fatalf("Client(): %v", err)
	}

	svc := &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 9}
	if err := client.Agent().ServiceRegister(svc); err != nil {
		t.Fatalf("register service %q: %v", svc.ID, err)
	}

	addr, ports, oldPID := agent.HTTPAddr(), agent.Ports(), agent.PID()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	start := time.Now()
	if err := agent.Restart(ctx); err != nil {
		t.Fatalf("Restart(): %v", err)
	}

	t.Logf("restart took %v", time.Since(start))

	if agent.HTTPAddr() != addr || agent.Ports() != ports {
		t.Errorf("after Restart: addr %s ports %+v, want %s %+v",
			agent.HTTPAddr(), agent.Ports(), addr, ports)
	}

	if !processGone(oldPID) {
		t.Errorf("old agent process %d still exists after Restart", oldPID)
	}

	if agent.PID() == 0 || agent.PID() == oldPID {
		t.Errorf("PID() after Restart = %d, want a new running process (old %d)",
			agent.PID(), oldPID)
	}

	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader after Restart = %q, %v; want one", leader, err)
	}

	// The service was persisted in the data dir, so the agent reloads it and
	// syncs it into the new (in-memory) catalog.
	waitFor(t, 10*time.Second, "service back in catalog", func() error {
		entries, _, err := client.Catalog().Service("web", "", nil)
		if err != nil {
			return err
		}

		if len(entries) != 1 || entries[0].ServiceID != "web-1" {
			return fmt.Errorf("catalog entries for web: %d", len(entries))
		}

		return nil
	})
}

// pidWrapper returns a script that records its pid in a file and then
// becomes consul, so tests can find a process that Start never returned.
func pidWrapper(t *testing.T) (bin, pidFile string) {
	t.Helper()

	consul, err := testsupport.ConsulBin()
	if err != nil {
		t.Fatalf("consul binary not available: %v", err)
	}

	dir := t.TempDir()
	pidFile = filepath.Join(dir, "pid")
	bin = filepath.Join(dir, "consul-wrapper")
	script := fmt.Sprintf("#!/bin/sh\necho $$ > %q\nexec %q \"$@\"\n", pidFile, consul)

	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
		t.Fatalf("write %s: %v", bin, err)
	}

	return bin, pidFile
}

func readPID(t *testing.T, pidFile string) int {
	t.Helper()

	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}

	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("parse pid file %q: %v", raw, err)
	}

	return pid
}

func TestStartFailsFastOnBadConfig(t *testing.T) {
	t.Parallel()

	bin, pidFile := pidWrapper(t)

	start := time.Now()
	agent, err := consulagent.Start(context.Background(), consulagent.Config{
		Bin:      bin,
		ExtraHCL: "ports { http = \"not a number\" }\n",
	})
	took := time.Since(start)

	if err == nil {
		_ = agent.Stop()
		t.Fatalf("Start with invalid HCL succeeded")
	}

	if !strings.Contains(err.Error(), "exited before becoming ready") {
		t.Errorf("error = %q, want it to say the agent exited", err)
	}

	if took > 20*time.Second {
		t.Errorf("Start took %v to fail, want it to fail as soon as consul exits", took)
	}

	if pid := readPID(t, pidFile); !processGone(pid) {
		t.Errorf("consul process %d still exists after failed Start", pid)
	}
}

// cancelOnWrite cancels a context at the first write, i.e. once the agent
// process is up and talking.
type cancelOnWrite struct {
	cancel context.CancelFunc
}

func (c cancelOnWrite) Write(p []byte) (int, error) {
	c.cancel()

	return len(p), nil
}

func TestStartCancelledLeavesNoProcess(t *testing.T) {
	t.Parallel()

	bin, pidFile := pidWrapper(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	agent, err := consulagent.Start(ctx, consulagent.Config{
		Bin:       bin,
		LogOutput: cancelOnWrite{cancel: cancel},
	})
	if err == nil {
		_ = agent.Stop()
		t.Fatalf("Start succeeded although its context was cancelled")
	}

	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}

	if pid := readPID(t, pidFile); !processGone(pid) {
		t.Errorf("consul process %d still exists after cancelled Start", pid)
	}

	_, err = consulagent.Start(ctx, consulagent.Config{Bin: bin})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a done context: error = %v, want context.Canceled", err)
	}
}

// TestNewThenStart prepares an agent whose address is known before it runs,
// then starts, stops and starts it again on the same ports.
func TestNewThenStart(t *testing.T) {
	t.Parallel()

	agent := testsupport.NewConsul(t, consulagent.Config{})

	client, err := agent.Client()
	if err != nil {
		t.Fatalf("Client(): %v", err)
	}

	if pid := agent.PID(); pid != 0 {
		t.Fatalf("PID() = %d before Start, want 0", pid)
	}

	if _, err := client.Status().Leader(); err == nil {
		t.Fatalf("an agent answers on %s before Start", agent.HTTPAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	addr, ports := agent.HTTPAddr(), agent.Ports()

	steps := []struct {
		name string
		run  func() error
	}{
		{name: "start", run: func() error { return agent.Start(ctx) }},
		{name: "start again does nothing", run: func() error { return agent.Start(ctx) }},
		{name: "start after stop", run: func() error {
			if err := agent.Stop(); err != nil {
				return err
			}

			return agent.Start(ctx)
		}},
	}

	var lastPID int

	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}

		if leader, err := client.Status().Leader(); err != nil || leader == "" {
			t.Fatalf("%s: leader %q, %v; want one", step.name, leader, err)
		}

		if agent.HTTPAddr() != addr || agent.Ports() != ports {
			t.Errorf("%s: addr %s ports %+v, want %s %+v",
				step.name, agent.HTTPAddr(), agent.Ports(), addr, ports)
		}

		pid := agent.PID()
		if again := step.name == "start again does nothing"; again != (pid == lastPID) {
			t.Errorf("%s: pid %d, previous %d", step.name, pid, lastPID)
		}

		lastPID = pid
	}
}
