package main

import (
	"strings"
	"testing"
)

// TestParseFlagsRefuses checks that settings that cannot make a sound run
// are refused before anything starts, each with a message naming the flag.
func TestParseFlagsRefuses(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-only", "nomatch"}, "matches no scenario"},
		{[]string{"-only", "("}, "-only"},
		{[]string{"-only", "get-full", "-docs", "x.md"}, "cannot rewrite -docs"},
		{[]string{"-pool", "0"}, "-pool"},
		{[]string{"-pool", "10001"}, "-pool"},
		{[]string{"-beyond", "10000"}, "-beyond"},
		{[]string{"-warmup", "-1s"}, "cannot be negative"},
		{[]string{"-round-warmup", "-1s"}, "cannot be negative"},
		{[]string{"-pairs", "-1"}, "-pairs"},
		{[]string{"-rounds", "0"}, "at least 1 round"},
		{[]string{"-duration", "500ms"}, "1s per run"},
		{[]string{"stray"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(append(tc.args, "-out", t.TempDir()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseFlags(%q) = %v, want an error containing %q", tc.args, err,
					tc.want)
			}
		})
	}
}

// TestParseFlagsSubset checks that a sound subset run is accepted and its
// report says it is a subset, not the full set.
func TestParseFlagsSubset(t *testing.T) {
	c, err := parseFlags([]string{"-only", "get-(bare|full)-hot-es256", "-out", t.TempDir()})
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}

	rep := newReport(c, &machine{}, &runner{})
	rep.header()
	if out := rep.b.String(); !strings.Contains(out, "scenarios matching") ||
		strings.Contains(out, "the full set") {
		t.Errorf("subset run's header:\n%s", out)
	}
}
