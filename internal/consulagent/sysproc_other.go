//go:build unix && !linux

package consulagent

import "syscall"

// sysProcAttr puts the agent in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
