package ratelimit_test

import (
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

// step is one request in a scripted sequence: advance the clock by after,
// then ask, then compare the whole Decision.
type step struct {
	after time.Duration
	want  ratelimit.Decision
}

func allowed(remaining int, reset time.Duration) ratelimit.Decision {
	return ratelimit.Decision{Allowed: true, Limit: 3, Remaining: remaining, ResetAfter: reset}
}

func refused(reset, retry time.Duration) ratelimit.Decision {
	return ratelimit.Decision{Limit: 3, ResetAfter: reset, RetryAfter: retry}
}

// burstThenRefill drives a bucket of 3 refilling 2 per second: the burst
// goes through at once, the fourth request is told to wait 500ms, and
// tokens come back one per 500ms up to the burst and no further.
var burstThenRefill = []step{
	{0, allowed(2, 500*time.Millisecond)},
	{0, allowed(1, time.Second)},
	{0, allowed(0, 1500*time.Millisecond)},
	{0, refused(1500*time.Millisecond, 500*time.Millisecond)},
	{499 * time.Millisecond, refused(1001*time.Millisecond, time.Millisecond)},
	{time.Millisecond, allowed(0, 1500*time.Millisecond)},
	{250 * time.Millisecond, refused(1250*time.Millisecond, 250*time.Millisecond)},
	// Half a token was left; a second later there are two and a half.
	{time.Second, allowed(1, 750*time.Millisecond)},
	{0, allowed(0, 1250*time.Millisecond)},
	{0, refused(1250*time.Millisecond, 250*time.Millisecond)},
	// Idle far longer than the fill time: the bucket holds Burst, not more.
	{time.Hour, allowed(2, 500*time.Millisecond)},
	{0, allowed(1, time.Second)},
	{0, allowed(0, 1500*time.Millisecond)},
	{0, refused(1500*time.Millisecond, 500*time.Millisecond)},
}

// TestBurstThenRefill runs the same script against the local limiter and
// the Redis limiter (a real redis-server), both on an injected clock, so
// the Lua script is checked against the Go arithmetic.
func TestBurstThenRefill(t *testing.T) {
	rule := ratelimit.Rule{Rate: 2, Burst: 3}

	tests := []struct {
		name string
		new  func(t *testing.T, clock *fakeClock) ratelimit.Limiter
	}{
		{
			name: "local",
			new: func(t *testing.T, clock *fakeClock) ratelimit.Limiter {
				l, err := ratelimit.NewLocal(ratelimit.WithClock(clock.Now))
				if err != nil {
					t.Fatalf("NewLocal: %v", err)
				}

				return l
			},
		},
		{
			name: "redis",
			new: func(t *testing.T, clock *fakeClock) ratelimit.Limiter {
				_, client := startRedis(t)
				l, err := ratelimit.NewRedis(client, ratelimit.WithClock(clock.Now))
				if err != nil {
					t.Fatalf("NewRedis: %v", err)
				}

				return l
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l := tt.new(t, clock)

			for i, s := range burstThenRefill {
				clock.Advance(s.after)
				got := mustAllow(t, l, "client-a", rule)
				if got != s.want {
					t.Fatalf("step %d (after +%v): got %+v, want %+v", i, s.after, got, s.want)
				}
			}

			// Another key has a bucket of its own.
			if got := mustAllow(t, l, "client-b", rule); got != allowed(2, 500*time.Millisecond) {
				t.Errorf("first request of another key: got %+v, want a full bucket", got)
			}
		})
	}
}

func TestFractionalRate(t *testing.T) {
	clock := newFakeClock()
	l, err := ratelimit.NewLocal(ratelimit.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	// One request every two seconds.
	rule := ratelimit.Rule{Rate: 0.5, Burst: 1}
	if d := mustAllow(t, l, "k", rule); !d.Allowed {
		t.Fatalf("first request refused: %+v", d)
	}

	d := mustAllow(t, l, "k", rule)
	if d.Allowed || d.RetryAfter != 2*time.Second {
		t.Fatalf("second request: got %+v, want refused with RetryAfter 2s", d)
	}

	clock.Advance(2 * time.Second)
	if d := mustAllow(t, l, "k", rule); !d.Allowed {
		t.Fatalf("request after 2s refused: %+v", d)
	}
}
