package main

import (
	"strings"
	"testing"
	"time"
)

// fakeRun makes a sample of rps requests per second over one second, with the
// given front CPU per request and p99 (µs).
func fakeRun(rps, cpu, p99 float64) sample {
	return sample{load: load{Requests: int64(rps), Seconds: 1, P99: p99}, serverCPU: cpu}
}

func TestPairedRatio(t *testing.T) {
	r := &runner{cycles: map[string][]sample{
		"full": {fakeRun(50, 200, 10), fakeRun(90, 110, 10), fakeRun(70, 140, 10), fakeRun(10, 900, 10)},
		"bare": {fakeRun(100, 100, 5), fakeRun(100, 100, 5), fakeRun(100, 100, 5)},
	}}

	// Three cycles have both keys; the fourth full run has no partner.
	got, ok := r.pairedRatio("full", "bare", rpsRatio)
	if !ok {
		t.Fatal("pairedRatio: no figures")
	}
	if got.n != 3 || got.median != 0.7 || got.lo != 0.5 || got.hi != 0.9 {
		t.Errorf("req/s ratio = %+v, want median 0.7 over 3 cycles, range 0.5–0.9", got)
	}

	cpu, _ := r.pairedRatio("full", "bare", cpuRatio)
	if want := 100.0 / 140; cpu.median != want {
		t.Errorf("CPU ratio median = %v, want %v", cpu.median, want)
	}

	if _, ok := r.pairedRatio("full", "haproxy", rpsRatio); ok {
		t.Error("pairedRatio with a key that never ran: want no figures")
	}
}

// TestTargetsUsePairedFigures checks that a verdict follows the paired
// median, not the ratio of the rounds' medians, when both exist.
func TestTargetsUsePairedFigures(t *testing.T) {
	r := &runner{
		samples: map[string][]sample{
			// Rounds: full looks far slower than bare (0.50).
			"get-full-hot-es256": {fakeRun(50, 200, 10)},
			"get-bare-hot-es256": {fakeRun(100, 100, 10)},
		},
		cycles: map[string][]sample{
			// Cycles: full at 0.90 of bare within each.
			"get-full-hot-es256": {fakeRun(90, 110, 10), fakeRun(45, 220, 10), fakeRun(90, 110, 10)},
			"get-bare-hot-es256": {fakeRun(100, 100, 10), fakeRun(50, 200, 10), fakeRun(100, 100, 10)},
		},
	}
	out := targetsTable(r)

	want := "| full / bare req/s ≥ 0.85, full with 1 ES256 | 0.50 | " +
		"0.90 (0.90–0.90 over 3) | met |"
	if !strings.Contains(out, want) {
		t.Errorf("targets table lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "3 cycles") {
		t.Errorf("targets table does not say how many cycles:\n%s", out)
	}
}

// TestPacedGapUsesPairedFigures checks the half-saturation target: the p99
// gap is judged on the median of the gaps within cycles, in milliseconds,
// so one disturbed round cannot decide it.
func TestPacedGapUsesPairedFigures(t *testing.T) {
	r := &runner{
		samples: map[string][]sample{
			// Rounds: full's p99 4 ms above bare's.
			"paced-full": {fakeRun(50, 150, 9000)},
			"paced-bare": {fakeRun(50, 100, 5000)},
		},
		cycles: map[string][]sample{
			// Cycles: gaps of 1, 6 and 1.5 ms; the median is 1.5 ms.
			"paced-full": {fakeRun(50, 150, 3000), fakeRun(50, 150, 9000),
				fakeRun(50, 150, 4000)},
			"paced-bare": {fakeRun(50, 100, 2000), fakeRun(50, 100, 3000),
				fakeRun(50, 100, 2500)},
		},
	}
	out := targetsTable(r)

	want := "| full p99 − bare p99 at half of saturation < 2 ms | 4.00 ms | " +
		"1.50 ms (1.00–6.00 over 3) | met |"
	if !strings.Contains(out, want) {
		t.Errorf("targets table lacks %q:\n%s", want, out)
	}

	// Without cycles the rounds decide, and 4 ms misses.
	r.cycles = nil
	want = "| full p99 − bare p99 at half of saturation < 2 ms | 4.00 ms | – | **missed** |"
	if out := targetsTable(r); !strings.Contains(out, want) {
		t.Errorf("targets table lacks %q:\n%s", want, out)
	}
}

// targetsTable renders the targets table of r's figures, with the paired
// phase's runs 3 s long.
func targetsTable(r *runner) string {
	rep := newReport(runConfig{pairDuration: 3 * time.Second}, &machine{}, r)
	rep.targets()

	return rep.b.String()
}
