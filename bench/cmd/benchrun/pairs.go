package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// pairedKeys are the scenarios of the paired phase: those the issue's
// targets compare. On a machine other processes share, two configurations
// measured minutes apart can see different competition; measured seconds
// apart, in one cycle, they mostly see the same, so a ratio taken within
// each cycle and then its median over the cycles is steadier than the
// ratio of two medians taken over rounds. The paced pair's p99 difference
// is taken the same way.
var pairedKeys = []string{
	"get-bare-hot-es256",
	"get-bare-gogc-hot-es256",
	"get-full-hot-es256",
	"get-haproxy-hot-es256",
	"get-full-pool",
	"get-haproxy-pool",
	"paced-bare",
	"paced-full",
}

// pairWarmup is the warm-up before each run of the paired phase.
const pairWarmup = 500 * time.Millisecond

// pairedCycles runs the paired scenarios of this run back to back,
// cfg.pairs times, starting each cycle at the next scenario so that none
// always runs first; cycles[key][i] is the run of key in cycle i.
func (r *runner) pairedCycles(ctx context.Context) error {
	var list []scenario
	for _, s := range r.selected() {
		// Paced runs need the pace the paced rounds set.
		if slices.Contains(pairedKeys, s.key) && (!s.paced || r.paceMS > 0) {
			list = append(list, s)
		}
	}
	if len(list) < 2 || r.cfg.pairs == 0 {
		return nil
	}

	say(r.log, "paired phase: %d cycles of %d scenarios, %s each\n", r.cfg.pairs, len(list),
		r.cfg.pairDuration)
	for cycle := range r.cfg.pairs {
		for i := range list {
			s := list[(cycle+i)%len(list)]
			if _, err := r.once(ctx, s, pairWarmup); err != nil {
				return err
			}
			got, err := r.once(ctx, s, r.cfg.pairDuration)
			if err != nil {
				return err
			}
			r.cycles[s.key] = append(r.cycles[s.key], got)
		}
		say(r.log, "paired cycle %d/%d done, load %.2f\n", cycle+1, r.cfg.pairs,
			loadAverage())
	}

	return nil
}

// paired is a ratio taken within each cycle of the paired phase.
type paired struct {
	median, lo, hi float64
	n              int
}

// pairedRatio computes f(num, den) within each cycle; ok is false when the
// run has no paired figures of both keys.
func (r *runner) pairedRatio(num, den string, f func(num, den sample) float64) (paired, bool) {
	a, b := r.cycles[num], r.cycles[den]
	n := min(len(a), len(b))
	if n == 0 {
		return paired{}, false
	}

	vals := make([]float64, n)
	for i := range n {
		vals[i] = f(a[i], b[i])
	}
	slices.Sort(vals)

	mid := n / 2
	med := vals[mid]
	if n%2 == 0 {
		med = (vals[mid-1] + vals[mid]) / 2
	}

	return paired{median: med, lo: vals[0], hi: vals[n-1], n: n}, true
}

// withUnit renders the median followed by unit, then the range over the
// cycles.
func (p paired) withUnit(unit string) string {
	return fmt.Sprintf("%.2f%s (%.2f–%.2f over %d)", p.median, unit, p.lo, p.hi, p.n)
}

// Ratios of two runs, as the targets state them.
func rpsRatio(num, den sample) float64 { return num.RPS() / den.RPS() }

// cpuRatio is den's CPU per request over num's: above 1 when num is cheaper.
func cpuRatio(num, den sample) float64 { return den.serverCPU / num.serverCPU }

func p99Ratio(num, den sample) float64 { return num.P99 / den.P99 }

// p99Gap is num's p99 minus den's, in milliseconds.
func p99Gap(num, den sample) float64 { return (num.P99 - den.P99) / 1e3 }
