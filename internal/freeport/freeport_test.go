package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/freeport"
)

// TestPortsBindAndDiffer picks many ports and checks each is below the
// kernel's ephemeral range, bindable, and never handed out twice.
func TestPortsBindAndDiffer(t *testing.T) {
	const n = 200
	seen := map[int]bool{}

	for range n {
		port, err := freeport.Port("127.0.0.1")
		if err != nil {
			t.Fatalf("Port: %v", err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true

		lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d does not bind: %v", port, err)
		}
		_ = lis.Close()
	}
}

func TestPickedBelowEphemeralRange(t *testing.T) {
	low := freeport.EphemeralLowForTest()
	if low <= 15000 {
		t.Skipf("ephemeral range starts at %d; the kernel's choice is used", low)
	}

	for range 50 {
		port, err := freeport.Port("127.0.0.1")
		if err != nil {
			t.Fatalf("Port: %v", err)
		}
		if port < 15000 || port >= low {
			t.Fatalf("port %d outside [15000, %d)", port, low)
		}
	}
}

func TestHoldKeepsPortBusy(t *testing.T) {
	port, closers, err := freeport.Hold("127.0.0.1", true)
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	if lis, err := net.Listen("tcp", addr); err == nil {
		_ = lis.Close()
		t.Fatalf("TCP %s bound while held", addr)
	}
	if pc, err := net.ListenPacket("udp", addr); err == nil {
		_ = pc.Close()
		t.Fatalf("UDP %s bound while held", addr)
	}

	for _, c := range closers {
		_ = c.Close()
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP %s not free after release: %v", addr, err)
	}
	_ = lis.Close()
}

func TestAddrFormat(t *testing.T) {
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatalf("Addr: %v", err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %q (%v), want 127.0.0.1 and a port", addr, err)
	}
}
