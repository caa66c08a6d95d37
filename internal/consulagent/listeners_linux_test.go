package consulagent_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
)

// socket is one bound socket of a process, from /proc/net.
type socket struct {
	proto string
	addr  netip.AddrPort
}

func (s socket) String() string {
	return s.proto + " " + s.addr.String()
}

// checkListeners asserts that the agent listens on exactly the expected
// loopback ports (plus the extra TCP ports given), on nothing else, and in
// particular not on 8503.
func checkListeners(t *testing.T, pid int, ports consulagent.Ports, extraTCP ...int) {
	t.Helper()

	socks, err := boundSockets(pid)
	if err != nil {
		t.Fatalf("list sockets of pid %d: %v", pid, err)
	}

	want := []string{
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.HTTP),
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.DNS),
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.SerfLAN),
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.SerfWAN),
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.Server),
		fmt.Sprintf("tcp 127.0.0.1:%d", ports.GRPC),
		fmt.Sprintf("udp 127.0.0.1:%d", ports.DNS),
		fmt.Sprintf("udp 127.0.0.1:%d", ports.SerfLAN),
		fmt.Sprintf("udp 127.0.0.1:%d", ports.SerfWAN),
	}

	for _, port := range extraTCP {
		want = append(want, fmt.Sprintf("tcp 127.0.0.1:%d", port))
	}

	var got []string
	for _, s := range socks {
		got = append(got, s.String())

		if !s.addr.Addr().IsLoopback() {
			t.Errorf("agent bound %s, which is not loopback", s)
		}

		if s.addr.Port() == 8503 {
			t.Errorf("agent bound %s: the -dev default grpc_tls port must be off", s)
		}
	}

	slices.Sort(got)
	got = slices.Compact(got)
	slices.Sort(want)

	if !slices.Equal(got, want) {
		t.Errorf("agent sockets:\n got %v\nwant %v", got, want)
	}
}

// boundSockets returns the listening TCP and bound UDP sockets of pid.
func boundSockets(pid int) ([]socket, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, err
	}

	var out []socket

	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		socks, err := readSocketTable(table, inodes)
		if err != nil {
			return nil, err
		}

		out = append(out, socks...)
	}

	return out, nil
}

func socketInodes(pid int) (map[string]bool, error) {
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")

	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", fdDir, err)
	}

	inodes := map[string]bool{}

	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}

		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}

	return inodes, nil
}

// readSocketTable parses /proc/net/<table> and returns the sockets whose
// inode is in inodes: TCP ones in LISTEN state, UDP ones unconnected.
func readSocketTable(table string, inodes map[string]bool) ([]socket, error) {
	path := filepath.Join("/proc/net", table)

	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()

	proto := strings.TrimSuffix(table, "6")
	wantState := "0A" // TCP_LISTEN
	if proto == "udp" {
		wantState = "07" // TCP_CLOSE, i.e. not connected
	}

	var out []socket

	sc := bufio.NewScanner(f)
	sc.Scan() // header

	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !inodes[fields[9]] || fields[3] != wantState {
			continue
		}

		addr, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("parse %s line %q: %w", path, sc.Text(), err)
		}

		out = append(out, socket{proto: proto, addr: addr})
	}

	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}

	return out, nil
}

// parseProcAddr parses "0100007F:1F90" style addresses: the IP as 32-bit
// words in host (little-endian here) byte order, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}

	raw, err := hex.DecodeString(ipHex)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("decode ip %q: %w", ipHex, err)
	}

	for i := 0; i+4 <= len(raw); i += 4 {
		slices.Reverse(raw[i : i+4])
	}

	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad ip length in %q", s)
	}

	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse port %q: %w", portHex, err)
	}

	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
