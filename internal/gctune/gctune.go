// Package gctune gives Gatehouse's long-running binaries a garbage
// collector target suited to a request path that allocates fast over a
// small live heap, unless the operator chose one with GOGC.
//
// With Go's default (GOGC=100) a gateway whose live heap is a few
// megabytes starts a collection every few megabytes of allocation, which
// under load is many times a second; marking then costs about a tenth of
// the process's CPU. DefaultPercent makes collections four times rarer for
// a peak heap about five times the live one instead of two. GOMEMLIMIT, if
// set, still bounds the heap; GOGC, if set, wins.
package gctune

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"

	"go.uber.org/zap"
)

// DefaultPercent is the GOGC value the binaries use when the environment
// sets none. docs/benchmarks.md has the measurement behind it.
const DefaultPercent = 400

// gogcMetric is the runtime's own record of the GOGC in force.
const gogcMetric = "/gc/gogc:percent"

// Apply sets the collector's target to DefaultPercent unless GOGC is set,
// and not empty, in the environment, and logs the target in force either
// way: the runtime's reading of it, since Go quietly runs at 100 on a GOGC
// it cannot parse.
func Apply(logger *zap.Logger) {
	if raw := os.Getenv("GOGC"); raw != "" {
		logger.Info("garbage collector", zap.String("gogc", Current()),
			zap.String("source", "GOGC environment variable"), zap.String("env", raw))
		return
	}

	debug.SetGCPercent(DefaultPercent)
	logger.Info("garbage collector", zap.String("gogc", Current()),
		zap.String("source", "Gatehouse default; set GOGC to change it"))
}

// Current is the GOGC in force as the runtime reports it: a percentage, or
// "off" when collection is off.
func Current() string {
	sample := []metrics.Sample{{Name: gogcMetric}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return "unknown"
	}

	v := sample[0].Value.Uint64()
	if int64(v) < 0 {
		return "off"
	}

	return strconv.FormatUint(v, 10)
}
