package gctune_test

import (
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// keepPercent puts back the collector's target the test started with.
func keepPercent(t *testing.T) {
	t.Helper()
	before := debug.SetGCPercent(100)
	debug.SetGCPercent(before)
	t.Cleanup(func() { debug.SetGCPercent(before) })
}

// applyLogged runs Apply and returns the fields of its one log entry.
func applyLogged(t *testing.T) map[string]any {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	gctune.Apply(zap.New(core))

	entries := logs.FilterMessage("garbage collector").All()
	if len(entries) != 1 {
		t.Fatalf("log entries = %v, want one", entries)
	}

	return entries[0].ContextMap()
}

// TestApplyDefault checks that an absent or empty GOGC, which Go reads as
// its default, leaves the choice to Apply.
func TestApplyDefault(t *testing.T) {
	for _, unset := range []bool{true, false} {
		t.Run(map[bool]string{true: "absent", false: "empty"}[unset], func(t *testing.T) {
			keepPercent(t)
			// t.Setenv restores GOGC after the test.
			t.Setenv("GOGC", "")
			if unset {
				if err := os.Unsetenv("GOGC"); err != nil {
					t.Fatalf("unset GOGC: %v", err)
				}
			}
			debug.SetGCPercent(100)

			fields := applyLogged(t)

			want := strconv.Itoa(gctune.DefaultPercent)
			if got := gctune.Current(); got != want {
				t.Fatalf("GOGC after Apply = %s, want %s", got, want)
			}
			if fields["gogc"] != want {
				t.Errorf("logged gogc = %v, want %s", fields["gogc"], want)
			}
		})
	}
}

// TestApplyKeepsEnvironment sets the collector as the runtime would have
// read each GOGC value at start, and checks Apply leaves it and logs it.
func TestApplyKeepsEnvironment(t *testing.T) {
	tests := []struct {
		env     string
		percent int // what the runtime runs at for env
		logged  string
	}{
		{"150", 150, "150"},
		{"off", -1, "off"},
		// Go runs at 100 on a value it cannot parse; the log says so.
		{"fast", 100, "100"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			keepPercent(t)
			t.Setenv("GOGC", tt.env)
			debug.SetGCPercent(tt.percent)

			fields := applyLogged(t)

			if got := gctune.Current(); got != tt.logged {
				t.Fatalf("GOGC after Apply = %s, want %s", got, tt.logged)
			}
			if fields["gogc"] != tt.logged || fields["env"] != tt.env {
				t.Errorf("logged gogc=%v env=%v, want %s and %s", fields["gogc"],
					fields["env"], tt.logged, tt.env)
			}
		})
	}
}
