package gctune_test

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// currentPercent reads the collector's target without changing it.
func currentPercent(t *testing.T) int {
	t.Helper()
	v := debug.SetGCPercent(100)
	debug.SetGCPercent(v)

	return v
}

// restore puts back the collector's target the test started with.
func restore(t *testing.T) {
	t.Helper()
	before := currentPercent(t)
	t.Cleanup(func() { debug.SetGCPercent(before) })
}

func TestApplyDefault(t *testing.T) {
	restore(t)
	// t.Setenv restores GOGC after the test; then it is removed, since
	// only an absent GOGC leaves the choice to Apply.
	t.Setenv("GOGC", "")
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatalf("unset GOGC: %v", err)
	}
	debug.SetGCPercent(100)

	core, logs := observer.New(zap.InfoLevel)
	gctune.Apply(zap.New(core))

	if got := currentPercent(t); got != gctune.DefaultPercent {
		t.Fatalf("GOGC after Apply = %d, want %d", got, gctune.DefaultPercent)
	}
	entries := logs.FilterMessage("garbage collector").All()
	if len(entries) != 1 || entries[0].ContextMap()["gogc"] != "400" {
		t.Fatalf("log entries = %v, want one with gogc=400", entries)
	}
}

func TestApplyKeepsEnvironment(t *testing.T) {
	restore(t)
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)

	core, logs := observer.New(zap.InfoLevel)
	gctune.Apply(zap.New(core))

	if got := currentPercent(t); got != 150 {
		t.Fatalf("GOGC after Apply = %d, want the environment's 150", got)
	}
	entries := logs.FilterMessage("garbage collector").All()
	if len(entries) != 1 || entries[0].ContextMap()["gogc"] != "150" {
		t.Fatalf("log entries = %v, want one with gogc=150", entries)
	}
}
