package ratelimit_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func newLocal(t *testing.T, opts ...ratelimit.Option) *ratelimit.Local {
	t.Helper()

	l, err := ratelimit.NewLocal(opts...)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	return l
}

func TestLocalEvictsLeastRecentlyUsedWhenFull(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	clock := newFakeClock()
	l := newLocal(t, ratelimit.WithMaxKeys(2), ratelimit.WithShards(1),
		ratelimit.WithClock(clock.Now), ratelimit.WithLogger(zap.New(core)))
	slow := ratelimit.Rule{Rate: 1, Burst: 1}

	// a and b spend their only token; a is then seen again, so b is the
	// least recently used when c arrives.
	mustAllow(t, l, "a", slow)
	mustAllow(t, l, "b", slow)
	if d := mustAllow(t, l, "a", slow); d.Allowed {
		t.Fatalf("a allowed twice in a row: %+v", d)
	}

	if d := mustAllow(t, l, "c", slow); !d.Allowed {
		t.Fatalf("new key c refused on a full table: %+v", d)
	}

	if n := l.Len(); n != 2 {
		t.Errorf("Len = %d after a third key, want the ceiling 2", n)
	}

	if d := mustAllow(t, l, "a", slow); d.Allowed {
		t.Errorf("a was evicted although b was older: %+v", d)
	}

	if d := mustAllow(t, l, "b", slow); !d.Allowed {
		t.Errorf("b still limited; it should have been evicted: %+v", d)
	}

	// b's return evicted c; both evictions dropped buckets with state.
	if got := logs.FilterMessageSnippet("key table is full").Len(); got != 1 {
		t.Errorf("got %d warnings about the full table, want exactly 1", got)
	}
}

func TestLocalSweepsIdleBuckets(t *testing.T) {
	clock := newFakeClock()
	l := newLocal(t, ratelimit.WithShards(1), ratelimit.WithClock(clock.Now))
	rule := ratelimit.Rule{Rate: 1, Burst: 1}

	for i := range 10 {
		mustAllow(t, l, "idle-"+strconv.Itoa(i), rule)
	}

	if n := l.Len(); n != 10 {
		t.Fatalf("Len = %d, want 10", n)
	}

	// Once every bucket has refilled, traffic on one key drops the rest.
	clock.Advance(time.Second)
	for range 5 {
		mustAllow(t, l, "busy", rule)
	}

	if n := l.Len(); n != 1 {
		t.Errorf("Len = %d after the others went idle, want 1", n)
	}

	// A bucket that has not refilled yet is kept.
	clock.Advance(500 * time.Millisecond)
	mustAllow(t, l, "other", rule)
	if d := mustAllow(t, l, "busy", rule); d.Allowed {
		t.Errorf("busy allowed after 1.5s with its token spent at 1s: %+v", d)
	}
}

func TestLocalRejectsInvalidRules(t *testing.T) {
	l := newLocal(t)

	tests := []struct {
		name string
		rule ratelimit.Rule
	}{
		{name: "zero rule", rule: ratelimit.Rule{}},
		{name: "negative rate", rule: ratelimit.Rule{Rate: -1, Burst: 1}},
		{name: "NaN rate", rule: ratelimit.Rule{Rate: math.NaN(), Burst: 1}},
		{name: "infinite rate", rule: ratelimit.Rule{Rate: math.Inf(1), Burst: 1}},
		{name: "rate above max", rule: ratelimit.Rule{Rate: ratelimit.MaxRate + 1, Burst: 1}},
		{name: "zero burst", rule: ratelimit.Rule{Rate: 1}},
		{name: "burst above max", rule: ratelimit.Rule{Rate: 1, Burst: ratelimit.MaxBurst + 1}},
		{name: "fill time above max", rule: ratelimit.Rule{Rate: 0.00001, Burst: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Allow(context.Background(), "k", tt.rule)
			if !errors.Is(err, ratelimit.ErrInvalidRule) {
				t.Fatalf("Allow with %+v: got %v, want ErrInvalidRule", tt.rule, err)
			}
		})
	}
}

func TestNewLocalRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  ratelimit.Option
	}{
		{name: "zero key ceiling", opt: ratelimit.WithMaxKeys(0)},
		{name: "zero shards", opt: ratelimit.WithShards(0)},
		{name: "nil clock", opt: ratelimit.WithClock(nil)},
		{name: "nil logger", opt: ratelimit.WithLogger(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ratelimit.NewLocal(tt.opt); !errors.Is(err, ratelimit.ErrInvalidOption) {
				t.Fatalf("NewLocal: got %v, want ErrInvalidOption", err)
			}
		})
	}
}

// TestLocalConcurrentCallers checks, under -race, that concurrent callers
// get exactly the burst between them from a shared bucket while other keys
// churn, and that a small table never holds more than its ceiling.
func TestLocalConcurrentCallers(t *testing.T) {
	clock := newFakeClock()
	big := newLocal(t, ratelimit.WithClock(clock.Now))
	small := newLocal(t, ratelimit.WithClock(clock.Now), ratelimit.WithMaxKeys(8))
	rule := ratelimit.Rule{Rate: 1, Burst: 50}

	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				churn := "churn-" + strconv.Itoa(g*20+i)
				for _, l := range []*ratelimit.Local{big, small} {
					if _, err := l.Allow(context.Background(), churn, rule); err != nil {
						t.Errorf("Allow(%q): %v", churn, err)
					}
				}

				d, err := big.Allow(context.Background(), "shared", rule)
				if err != nil {
					t.Errorf("Allow(shared): %v", err)
				}

				if d.Allowed {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()

	// 320 requests on one key with the clock standing still.
	if got := granted.Load(); got != 50 {
		t.Errorf("granted %d of 320 on the shared key, want the burst of 50", got)
	}

	if n := small.Len(); n > 8 {
		t.Errorf("Len = %d, above the ceiling of 8", n)
	}

	if n := big.Len(); n != 321 {
		t.Errorf("Len = %d, want 320 churn keys and the shared one", n)
	}
}
