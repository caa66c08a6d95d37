//go:build unix

package consulagent

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// waitDelay bounds how long Wait keeps copying output after the process has
// exited, in case some other process inherited the output pipe.
const waitDelay = 2 * time.Second

// termRepeat is how often stop repeats SIGTERM while it waits.
const termRepeat = time.Second

// killWait bounds the wait for a process to exit after SIGKILL.
const killWait = 5 * time.Second

// process is one running child process that leads its own process group, so
// that signalling the group reaches everything it may have spawned.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned

	mu      sync.Mutex
	waitErr error
}

// startProcess starts bin with args in a new process group, sending its
// stdout and stderr to out (nil discards them).
func startProcess(bin string, args []string, out io.Writer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = waitDelay

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}

	p := &process{cmd: cmd, done: make(chan struct{})}
	go p.wait()

	return p, nil
}

func (p *process) wait() {
	err := p.cmd.Wait()

	p.mu.Lock()
	p.waitErr = err
	p.mu.Unlock()

	close(p.done)
}

// pid returns the process id, which is also its process group id.
func (p *process) pid() int {
	return p.cmd.Process.Pid
}

// exited reports whether the process has exited and been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr returns what Wait returned; only meaningful once done is closed.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.waitErr
}

// stop sends SIGTERM to the process group (repeatedly, see terminate),
// escalates to SIGKILL when the leader has not exited within grace (at once
// if grace is 0), and waits for the leader to be reaped. Whatever is left
// in the group afterwards is killed too, so no stray process outlives stop.
// It is safe to call more than once.
func (p *process) stop(grace time.Duration) error {
	if grace > 0 && !p.exited() {
		if err := p.terminate(grace); err != nil {
			return err
		}
	}

	if !p.exited() {
		if err := p.signalGroup(syscall.SIGKILL); err != nil {
			return err
		}

		// SIGKILL cannot be ignored; the bound only guards against a process
		// stuck in uninterruptible sleep.
		timer := time.NewTimer(killWait)
		defer timer.Stop()

		select {
		case <-p.done:
		case <-timer.C:
			return fmt.Errorf("process %d did not exit within %v of SIGKILL", p.pid(), killWait)
		}
	}

	// The leader is gone; make sure nothing it spawned survives it.
	return p.signalGroup(syscall.SIGKILL)
}

// terminate sends SIGTERM to the group and waits up to grace for the leader
// to exit. It repeats the signal every termRepeat: a consul agent that is
// still starting up logs a SIGTERM and then ignores it, but stops on one that
// arrives once it is up. (A consul already shutting down takes a second
// SIGTERM as "exit now", which for a dev agent only skips a few
// milliseconds of cleanup.)
func (p *process) terminate(grace time.Duration) error {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()

	repeat := time.NewTicker(termRepeat)
	defer repeat.Stop()

	for {
		if err := p.signalGroup(syscall.SIGTERM); err != nil {
			return err
		}

		select {
		case <-p.done:
			return nil
		case <-deadline.C:
			return nil
		case <-repeat.C:
		}
	}
}

// signalGroup sends sig to every process in the group. A group that no
// longer exists is not an error.
func (p *process) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid(), sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}

	return fmt.Errorf("send %v to process group %d: %w", sig, p.pid(), err)
}
