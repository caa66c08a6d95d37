//go:build unix

package consulagent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessStopEscalatesAndKillsGroup(t *testing.T) {
	childPIDFile := filepath.Join(t.TempDir(), "child")
	ready := filepath.Join(t.TempDir(), "ready")

	// A leader that ignores SIGTERM and a child that would outlive it.
	script := `trap '' TERM
sleep 300 &
echo $! > "$1"
touch "$2"
wait`

	tail := newTailBuffer(tailSize)

	p, err := startProcess("/bin/sh", []string{"-c", script, "sh", childPIDFile, ready}, tail)
	if err != nil {
		t.Fatalf("startProcess: %v", err)
	}

	waitFile(t, ready)

	raw, err := os.ReadFile(childPIDFile)
	if err != nil {
		t.Fatalf("read child pid: %v", err)
	}

	child, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("parse child pid %q: %v", raw, err)
	}

	const grace = 300 * time.Millisecond

	start := time.Now()
	if err := p.stop(grace); err != nil {
		t.Fatalf("stop: %v", err)
	}

	if took := time.Since(start); took < grace {
		t.Errorf("stop took %v, want at least the grace %v since SIGTERM is ignored", took, grace)
	}

	if !p.exited() {
		t.Errorf("leader not reaped after stop")
	}

	// The orphaned sleep is reparented, so it may linger briefly (or as a
	// zombie, if nobody reaps it); poll until it is dead.
	deadline := time.Now().Add(5 * time.Second)
	for !dead(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the process group survived stop", child)
		}

		time.Sleep(10 * time.Millisecond)
	}

	if err := p.stop(grace); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestProcessStopRepeatsTerm(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	ready := filepath.Join(dir, "ready")

	// Like consul during startup: the first SIGTERM is noted and ignored.
	script := `trap 'if [ -f "$1" ]; then exit 0; fi; touch "$1"' TERM
touch "$2"
while :; do sleep 0.05; done`

	p, err := startProcess("/bin/sh", []string{"-c", script, "sh", seen, ready}, nil)
	if err != nil {
		t.Fatalf("startProcess: %v", err)
	}

	waitFile(t, ready)

	const grace = 30 * time.Second

	start := time.Now()
	if err := p.stop(grace); err != nil {
		t.Fatalf("stop: %v", err)
	}

	took := time.Since(start)
	if took < termRepeat || took > grace/2 {
		t.Errorf("stop took %v, want about %v: exit on the repeated SIGTERM", took, termRepeat)
	}

	if exitErr := p.exitErr(); exitErr != nil {
		t.Errorf("process exited with %v, want a clean exit from its TERM trap", exitErr)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}

		if time.Now().After(deadline) {
			t.Fatalf("%s not created after 10s", path)
		}

		time.Sleep(10 * time.Millisecond)
	}
}

// dead reports whether pid no longer runs: gone, or a zombie waiting to be
// reaped by a parent that is not us.
func dead(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}

	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}

	// The state follows the parenthesised command name.
	_, rest, ok := strings.Cut(string(stat), ") ")

	return ok && strings.HasPrefix(rest, "Z")
}
