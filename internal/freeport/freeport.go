// Package freeport picks loopback ports for programs that must be told
// their port before they listen: Consul, Redis and Gatehouse's own
// binaries started by tests, make run and the benchmark harness.
//
// Asking the kernel for port 0 and closing the socket again is racy in a
// particular way: the kernel takes that port from the ephemeral range, the
// same range it gives every outgoing connection, and a test run opens
// thousands of those. A port picked that way is often taken by a client
// socket before the child binds it. This package picks ports below the
// ephemeral range instead, at random, checks that they bind now, and never
// hands out the same port twice in one process. Another process can still
// bind a port between the pick and its use, so callers that can retry
// should.
package freeport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the bottom of the range ports are picked from; below it sit
// many well-known and registered service ports.
const lowest = 15000

// tries bounds the random picks before falling back to the kernel's
// choice.
const tries = 64

// rangeFile holds the kernel's ephemeral port range on Linux.
const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

var (
	mu     sync.Mutex
	issued = map[int]bool{}
	// top is the first port not picked from: the kernel's lowest
	// ephemeral port; zero when unknown, which means ask the kernel.
	top = ephemeralLow()
)

// Addr returns host:port with a TCP port free on host now.
func Addr(host string) (string, error) {
	port, err := Port(host)
	if err != nil {
		return "", err
	}

	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Port returns a TCP port free on host now.
func Port(host string) (int, error) {
	port, closers, err := reserve(host, false)
	if err != nil {
		return 0, err
	}
	closeAll(closers)

	return port, nil
}

// Hold returns a port free on host for TCP (and for UDP too when withUDP
// is set) with the sockets that hold it. Close them just before the port
// is used; holding lets a caller pick several ports without duplicates.
func Hold(host string, withUDP bool) (int, []io.Closer, error) {
	return reserve(host, withUDP)
}

func reserve(host string, withUDP bool) (int, []io.Closer, error) {
	if top > lowest {
		for range tries {
			port := lowest + rand.IntN(top-lowest)
			if !claim(port) {
				continue
			}
			if closers, err := bind(host, port, withUDP); err == nil {
				return port, closers, nil
			}
		}
	}

	// No range known, or every try was taken: the kernel's choice.
	for range tries {
		lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, nil, fmt.Errorf("freeport: listen on %s: %w", host, err)
		}
		port := lis.Addr().(*net.TCPAddr).Port
		if !claim(port) {
			_ = lis.Close()
			continue
		}
		closers := []io.Closer{lis}
		if withUDP {
			ul, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				_ = lis.Close()
				continue
			}
			closers = append(closers, ul)
		}

		return port, closers, nil
	}

	return 0, nil, errors.New("freeport: no free port on " + host)
}

// claim records port as handed out; false if it already was.
func claim(port int) bool {
	mu.Lock()
	defer mu.Unlock()

	if issued[port] {
		return false
	}
	issued[port] = true

	return true
}

// bind checks that port is free on host for TCP (and UDP) by listening.
func bind(host string, port int, withUDP bool) ([]io.Closer, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if !withUDP {
		return []io.Closer{lis}, nil
	}

	ul, err := net.ListenPacket("udp", addr)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}

	return []io.Closer{lis, ul}, nil
}

func closeAll(closers []io.Closer) {
	for _, c := range closers {
		_ = c.Close()
	}
}

// ephemeralLow reads the lowest ephemeral port, or 0 when it cannot.
func ephemeralLow() int {
	data, err := os.ReadFile(rangeFile)
	if err != nil {
		return 0
	}

	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}

	return low
}
