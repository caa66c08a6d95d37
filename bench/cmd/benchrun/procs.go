package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/freeport"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// process is a child process pinned to one core, its output in a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProcess runs bin with args under `taskset -c core`, with stdout and
// stderr written to logPath (emptied first), in its own process group, killed if this
// process dies first.
func startProcess(name string, core int, logPath, bin string, args ...string) (*process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	defer func() { _ = out.Close() }()

	argv := append([]string{"-c", strconv.Itoa(core), bin}, args...)
	cmd := exec.Command("taskset", argv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}

	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	return p, nil
}

// pid is the process id; taskset execs the program, so it is the
// program's own.
func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's group, waits up to grace, then
// kills the group.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}

	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last lines of the process's log, for error messages.
func (p *process) tail() string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")

	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// cpuTicks returns the user plus system CPU time of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of %d: %w", pid, err)
	}

	return parseStatTicks(string(data))
}

// parseStatTicks reads utime and stime (fields 14 and 15) from the text of
// /proc/PID/stat; the command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no command name")
	}

	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state), so utime (14) is fields[11].
	if len(fields) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the name", len(fields))
	}

	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse utime: %w", err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse stime: %w", err)
	}

	return utime + stime, nil
}

// outboundConns lists the established TCP connections pid opened to other
// processes (its local port is not one it listens on), as
// "local->remote" strings, skipping those to the excluded ports.
func outboundConns(pid int, exclude map[int]bool) (map[string]bool, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, err
	}

	var entries []tcpEntry
	for _, f := range []string{"tcp", "tcp6"} {
		e, err := readTCPTable(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}

	listening := map[int]bool{}
	for _, e := range entries {
		if inodes[e.inode] && e.state == tcpListen {
			listening[e.local.Port] = true
		}
	}

	out := map[string]bool{}
	for _, e := range entries {
		if !inodes[e.inode] || e.state != tcpEstablished || listening[e.local.Port] ||
			exclude[e.remote.Port] {
			continue
		}
		out[e.local.String()+"->"+e.remote.String()] = true
	}

	return out, nil
}

// socketInodes returns the inodes of pid's open sockets.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list sockets of %d: %w", pid, err)
	}

	inodes := map[uint64]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		rest, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
			inodes[n] = true
		}
	}

	return inodes, nil
}

// TCP states in /proc/net/tcp.
const (
	tcpEstablished = 0x01
	tcpListen      = 0x0A
)

type tcpEntry struct {
	local, remote *net.TCPAddr
	state         int
	inode         uint64
}

// readTCPTable parses /proc/net/tcp or tcp6.
func readTCPTable(path string) ([]tcpEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tcp table: %w", err)
	}
	defer func() { _ = f.Close() }()

	var out []tcpEntry
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		if e, ok := parseTCPLine(sc.Text()); ok {
			out = append(out, e)
		}
	}

	return out, sc.Err()
}

// parseTCPLine reads one line of /proc/net/tcp{,6}:
// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode".
func parseTCPLine(line string) (tcpEntry, bool) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return tcpEntry{}, false
	}

	local, ok1 := parseHexAddr(f[1])
	remote, ok2 := parseHexAddr(f[2])
	state, err1 := strconv.ParseInt(f[3], 16, 32)
	inode, err2 := strconv.ParseUint(f[9], 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return tcpEntry{}, false
	}

	return tcpEntry{local: local, remote: remote, state: int(state), inode: inode}, true
}

// parseHexAddr reads "0100007F:1F90" (IPv4, or 32 hex digits for IPv6, in
// host byte order per 32-bit word) and a hex port.
func parseHexAddr(s string) (*net.TCPAddr, bool) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok || (len(hexIP) != 8 && len(hexIP) != 32) {
		return nil, false
	}

	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return nil, false
	}

	ip := make(net.IP, len(hexIP)/2)
	for w := 0; w < len(hexIP)/8; w++ {
		word, err := strconv.ParseUint(hexIP[w*8:w*8+8], 16, 32)
		if err != nil {
			return nil, false
		}
		// Each 32-bit word is little-endian on the architectures we run on.
		for b := 0; b < 4; b++ {
			ip[w*4+b] = byte(word >> (8 * b))
		}
	}

	return &net.TCPAddr{IP: ip, Port: int(port)}, true
}

// freeAddr returns 127.0.0.1:port with a port free at the time of asking,
// below the kernel's ephemeral range (see internal/freeport).
func freeAddr() (string, error) {
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}

	return addr, nil
}

// portOf returns the port of a host:port or URL's host:port.
func portOf(addr string) int {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)

	return n
}
