package discovery

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoffDelay returns the delay before retry number failures (1-based):
// exponential from base, capped at maxDelay, with the upper half jittered
// so that many clients do not retry in lockstep.
func backoffDelay(base, maxDelay time.Duration, failures int) time.Duration {
	d := maxDelay

	if shift := failures - 1; shift < 32 {
		if exp := base << shift; exp > 0 && exp < d {
			d = exp
		}
	}

	half := d / 2

	return half + rand.N(half+1)
}

// sleepCtx waits for d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
