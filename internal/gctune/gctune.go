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
	"strconv"

	"go.uber.org/zap"
)

// DefaultPercent is the GOGC value the binaries use when the environment
// sets none. docs/benchmarks.md has the measurement behind it.
const DefaultPercent = 400

// Apply sets the collector's target to DefaultPercent unless GOGC is set in
// the environment, and logs the target in force either way.
func Apply(logger *zap.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		logger.Info("garbage collector", zap.String("gogc", v),
			zap.String("source", "GOGC environment variable"))
		return
	}

	debug.SetGCPercent(DefaultPercent)
	logger.Info("garbage collector", zap.String("gogc", strconv.Itoa(DefaultPercent)),
		zap.String("source", "Gatehouse default; set GOGC to change it"))
}
