package discovery

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
	}{
		{name: "first answer", prev: 0, got: 42, want: 42},
		{name: "moved on", prev: 42, got: 50, want: 50},
		{name: "unchanged after timeout", prev: 42, got: 42, want: 42},
		{name: "went backwards", prev: 42, got: 7, want: 0},
		{name: "zero never blocks", prev: 0, got: 0, want: 1},
	}

	for _, tt := range tests {
		if got := nextIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("%s: nextIndex(%d, %d) = %d, want %d", tt.name, tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	const base, maxDelay = 100 * time.Millisecond, 5 * time.Second

	for failures := 1; failures <= 100; failures++ {
		ceiling := min(base<<min(failures-1, 20), maxDelay)

		for range 20 {
			d := backoffDelay(base, maxDelay, failures)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestPassingInstances(t *testing.T) {
	entry := func(id, svcAddr, nodeAddr string, port int) *api.ServiceEntry {
		return &api.ServiceEntry{
			Node:    &api.Node{Address: nodeAddr},
			Service: &api.AgentService{ID: id, Address: svcAddr, Port: port},
		}
	}

	got := passingInstances([]*api.ServiceEntry{
		entry("c", "127.0.0.3", "", 80),
		entry("a", "", "127.0.0.1", 80), // falls back to the node address
		entry("b", "127.0.0.2", "", 0),  // no port: skipped
		entry("d", "::1", "", 90),       // IPv6 is bracketed
		entry("e", "127.0.0.3", "", 80), // same address as c: one connection
		{Service: nil},                  // malformed: skipped
		entry("f", "", "", 80),          // no address at all: skipped
	})

	want := []instance{
		{id: "a", addr: "127.0.0.1:80"},
		{id: "c", addr: "127.0.0.3:80"},
		{id: "d", addr: "[::1]:90"},
	}

	if len(got) != len(want) {
		t.Fatalf("passingInstances = %v, want %v", got, want)
	}

	for i := range want {
		if got[i] != want[i] {
			t.Errorf("passingInstances[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
