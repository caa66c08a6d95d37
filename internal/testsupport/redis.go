package testsupport

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/freeport"
)

// RedisBinEnv names the environment variable that overrides the path of the
// redis-server binary used by StartRedis.
const RedisBinEnv = "REDIS_SERVER_BIN"

// Bounds on waiting for redis-server.
const (
	redisStartTimeout = 30 * time.Second
	redisStopTimeout  = 10 * time.Second
	redisPortAttempts = 3
	maxRedisLog       = 64 << 10
)

// redisReady is the line redis-server logs once it accepts connections.
const redisReady = "Ready to accept connections"

// RedisServer is a redis-server process owned by one test, listening on
// 127.0.0.1 with persistence off. Stop and Start let a test take it away
// and bring it back on the same port. It is safe for concurrent use.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	out  *logBuffer

	mu sync.Mutex
	// proc is the running process, nil while stopped.
	proc *redisProc
}

type redisProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedis starts redis-server on a free 127.0.0.1 port for the test and
// stops it when the test and its subtests are done. The binary comes from
// $REDIS_SERVER_BIN, else redis-server on PATH, else /usr/bin/redis-server;
// a missing binary fails the test. Its output is logged only on failure.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()

	bin, err := RedisBin()
	if err != nil {
		t.Fatalf("redis-server not available: %v", err)
	}

	s := &RedisServer{t: t, bin: bin, dir: t.TempDir(), out: &logBuffer{max: maxRedisLog}}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server output (last %d KiB at most):\n%s", maxRedisLog>>10, s.out)
		}
	})

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pick a port for redis-server: %v", err)
		}

		s.port = port
		err = s.start()
		if err == nil {
			return s
		}

		// Another process may take the port between picking and binding.
		if attempt == redisPortAttempts || !strings.Contains(s.out.String(), "in use") {
			t.Fatalf("start redis-server on port %d: %v\noutput:\n%s", port, err, s.out)
		}
	}
}

// Addr returns the server's host:port.
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Start starts the server again on the same port after Stop; it does
// nothing while the server runs.
func (s *RedisServer) Start() {
	s.t.Helper()

	if err := s.start(); err != nil {
		s.t.Fatalf("restart redis-server on %s: %v", s.Addr(), err)
	}
}

// Stop stops the server and waits for it to exit; it does nothing while
// the server is stopped.
func (s *RedisServer) Stop() {
	s.t.Helper()

	s.mu.Lock()
	defer s.mu.Unlock()

	if s.proc == nil {
		return
	}

	p := s.proc
	s.proc = nil
	_ = p.cmd.Process.Signal(syscall.SIGTERM)

	select {
	case <-p.exited:
	case <-time.After(redisStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		s.t.Errorf("redis-server on %s ignored SIGTERM for %v; killed it", s.Addr(),
			redisStopTimeout)
	}
}

func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.proc != nil {
		return nil
	}

	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", "",
		"--daemonize", "no",
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pipe output: %w", err)
	}

	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}

	p := &redisProc{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.exited)

		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = s.out.Write([]byte(line + "\n"))
			if !signalled && strings.Contains(line, redisReady) {
				signalled = true
				close(ready)
			}
		}

		_ = cmd.Wait()
	}()

	select {
	case <-ready:
		s.proc = p
		return nil
	case <-p.exited:
		return errors.New("redis-server exited before it was ready")
	case <-time.After(redisStartTimeout):
		_ = cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("redis-server not ready after %v", redisStartTimeout)
	}
}

// RedisBin returns the redis-server binary tests should use.
func RedisBin() (string, error) {
	if bin := os.Getenv(RedisBinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("check $%s=%q: %w", RedisBinEnv, bin, err)
		}

		return bin, nil
	}

	if bin, err := exec.LookPath("redis-server"); err == nil {
		return bin, nil
	}

	const debianPath = "/usr/bin/redis-server"
	if _, err := os.Stat(debianPath); err != nil {
		return "", fmt.Errorf("no redis-server on PATH or at %s (install Debian's redis-server, "+
			"or set $%s): %w", debianPath, RedisBinEnv, err)
	}

	return debianPath, nil
}

// freePort picks a free TCP port on 127.0.0.1 (see internal/freeport).
func freePort() (int, error) {
	return freeport.Port("127.0.0.1")
}
