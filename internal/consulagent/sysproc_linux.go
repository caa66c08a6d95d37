package consulagent

import "syscall"

// sysProcAttr puts the agent in its own process group and asks the kernel to
// kill it if the thread that started it dies, so a crashed test binary does
// not leave a consul agent behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
