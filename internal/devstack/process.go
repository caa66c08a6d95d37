package devstack

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Process is one child process of the stack.
type Process struct {
	// Name identifies the process in output and in Stack.Process.
	Name string

	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	stopped atomic.Bool // set by Signal: exiting afterwards is expected
}

// Pid is the operating-system process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Err is the process's exit error once it has ended (nil for status 0).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process's group, marking its exit as expected.
func (p *Process) Signal(sig syscall.Signal) error {
	p.stopped.Store(true)
	if p.Exited() {
		return nil
	}

	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("devstack: signal %s to %s: %w", sig, p.Name, err)
	}

	return nil
}

// Wait waits up to timeout for the process to end and returns its exit
// error, or an error if it is still running.
func (p *Process) Wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		return fmt.Errorf("devstack: %s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs the group. A process
// that exits on SIGTERM with status 0, or had already ended, stops without
// error.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}

	err := p.Wait(grace)
	if p.Exited() {
		if err != nil {
			return fmt.Errorf("devstack: %s exited: %w", p.Name, err)
		}
		return nil
	}

	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done

	return fmt.Errorf("devstack: %s ignored SIGTERM for %s and was killed", p.Name, grace)
}

// prefixWriter writes each complete line as "name | line".
type prefixWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix []byte
	buf    []byte
}

func newPrefixWriter(out io.Writer, name string) *prefixWriter {
	return &prefixWriter{out: out, prefix: fmt.Appendf(nil, "%-10s| ", name)}
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := append(append([]byte(nil), w.prefix...), w.buf[:i+1]...)
		w.buf = w.buf[i+1:]
		if _, err := w.out.Write(line); err != nil {
			return len(b), err
		}
	}

	return len(b), nil
}
