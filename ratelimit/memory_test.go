package ratelimit_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

// Documented memory bound of a Local (see the Local doc comment and
// docs/benchmarks.md): at most bytesPerKey per tracked key for keys of up
// to 128 bytes, the longest a Guard produces.
const (
	memTestKeys     = 1_000_000
	memTestMaxKeys  = 100_000
	memTestKeyBytes = 128
	bytesPerKey     = 320
)

// TestLocalMemoryIsBounded drives one million distinct 128-byte keys through
// a Local with a ceiling of 100,000 and checks that the live heap grows by
// less than the documented bound. Without the ceiling the same run keeps
// every key, several times the bound.
func TestLocalMemoryIsBounded(t *testing.T) {
	l, err := ratelimit.NewLocal(ratelimit.WithMaxKeys(memTestMaxKeys))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	// A slow rule keeps every bucket busy, so nothing is swept as idle and
	// only the ceiling bounds the table.
	rule := ratelimit.Rule{Rate: 0.001, Burst: 10}
	pad := strings.Repeat("x", memTestKeyBytes)

	before := liveHeap()
	for i := range memTestKeys {
		n := strconv.Itoa(i)
		key := pad[:memTestKeyBytes-len(n)] + n
		if _, err := l.Allow(context.Background(), key, rule); err != nil {
			t.Fatalf("Allow(%d): %v", i, err)
		}
	}
	after := liveHeap()
	runtime.KeepAlive(l)

	if n := l.Len(); n != memTestMaxKeys {
		t.Errorf("Len = %d, want the ceiling %d", n, memTestMaxKeys)
	}

	growth := int64(after) - int64(before)
	bound := int64(memTestMaxKeys * bytesPerKey)
	t.Logf("heap growth %d bytes for %d tracked keys (%.0f bytes per key); bound %d",
		growth, memTestMaxKeys, float64(growth)/memTestMaxKeys, bound)

	if growth > bound {
		t.Errorf("heap grew by %d bytes, above the documented bound of %d (%d keys × %d bytes)",
			growth, bound, memTestMaxKeys, bytesPerKey)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()

	var m runtime.MemStats
	runtime.ReadMemStats(&m)

	return m.HeapAlloc
}
