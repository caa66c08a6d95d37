package ratelimit_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRedisReplicasShareOneLimit plays two gateway replicas: two limiters,
// each with its own client, on one real Redis. Together they allow exactly
// the burst, as one replica alone would.
func TestRedisReplicasShareOneLimit(t *testing.T) {
	srv := startRedisServer(t)

	// One request per 1000s: no token comes back during the test, so the
	// count is exact even on Redis's own clock.
	rule := ratelimit.Rule{Rate: 0.001, Burst: 10}

	var replicas [2]*ratelimit.Redis
	for i := range replicas {
		r, err := ratelimit.NewRedis(newRedisClient(t, srv.Addr()))
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}

		replicas[i] = r
	}

	var granted [2]int
	for i := range 40 {
		r := i % 2
		if d := mustAllow(t, replicas[r], "principal|*|alice", rule); d.Allowed {
			granted[r]++
		}
	}

	if total := granted[0] + granted[1]; total != rule.Burst {
		t.Errorf("replicas granted %v, %d in total; want %d in total", granted, total, rule.Burst)
	}

	if granted[0] == 0 || granted[1] == 0 {
		t.Errorf("replicas granted %v; want both to have served some", granted)
	}

	for i, r := range replicas {
		if !r.Reachable() {
			t.Errorf("replica %d fell back from Redis", i)
		}
	}
}

// TestRedisFallsBackAndRecovers stops Redis mid-test: the limiter answers
// from its local fallback (still limiting), logs the outage once, keeps away
// from Redis until the probe interval has passed, and after Redis is back
// one probe brings it back into use, logged once.
func TestRedisFallsBackAndRecovers(t *testing.T) {
	srv := startRedisServer(t)
	admin := newRedisClient(t, srv.Addr())
	core, logs := observer.New(zapcore.InfoLevel)
	clock := newFakeClock()

	r, err := ratelimit.NewRedis(newRedisClient(t, srv.Addr()), ratelimit.WithClock(clock.Now),
		ratelimit.WithProbeInterval(time.Second), ratelimit.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}

	rule := ratelimit.Rule{Rate: 1, Burst: 2}
	ctx := context.Background()

	mustAllow(t, r, "before", rule)
	if n := admin.Exists(ctx, ratelimit.DefaultRedisPrefix+"before").Val(); n != 1 {
		t.Fatalf("bucket not written to Redis while it is up")
	}

	srv.Stop()

	var got []bool
	for range 4 {
		got = append(got, mustAllow(t, r, "during", rule).Allowed)
	}

	if want := []bool{true, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("decisions during the outage = %v, want %v (local limiting)", got, want)
	}

	if r.Reachable() {
		t.Errorf("Reachable() = true with Redis stopped")
	}

	srv.Start()

	// Before the probe interval has passed, Redis is left alone.
	mustAllow(t, r, "not-yet", rule)
	if n := admin.Exists(ctx, ratelimit.DefaultRedisPrefix+"not-yet").Val(); n != 0 {
		t.Errorf("limiter used Redis before the probe interval had passed")
	}

	// Each probe is one request; a probe may still meet a connection the
	// restart broke, so a few intervals are allowed for.
	for attempt := 0; attempt < 5 && !r.Reachable(); attempt++ {
		clock.Advance(time.Second)
		mustAllow(t, r, "after", rule)
	}

	if !r.Reachable() {
		t.Fatalf("Redis not back in use after 5 probe intervals")
	}

	if n := admin.Exists(ctx, ratelimit.DefaultRedisPrefix+"after").Val(); n != 1 {
		t.Errorf("bucket not written to Redis after recovery")
	}

	down := logs.FilterMessageSnippet("redis unreachable").Len()
	up := logs.FilterMessageSnippet("redis reachable again").Len()
	if down != 1 || up != 1 {
		t.Errorf("logged %d outage and %d recovery lines, want 1 each:\n%v", down, up,
			logs.All())
	}
}

// TestRedisFailureModes points limiters at a port where nothing listens.
func TestRedisFailureModes(t *testing.T) {
	addr := closedPort(t)
	rule := ratelimit.Rule{Rate: 1, Burst: 2}

	tests := []struct {
		name string
		mode ratelimit.FailureMode
		want []bool
	}{
		{name: "local", mode: ratelimit.FailLocal, want: []bool{true, true, false}},
		{name: "open", mode: ratelimit.FailOpen, want: []bool{true, true, true}},
		{name: "closed", mode: ratelimit.FailClosed, want: []bool{false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ratelimit.NewRedis(newRedisClient(t, addr),
				ratelimit.WithFailureMode(tt.mode), ratelimit.WithProbeInterval(3*time.Second))
			if err != nil {
				t.Fatalf("NewRedis: %v", err)
			}

			var got []bool
			var last ratelimit.Decision
			for range len(tt.want) {
				last = mustAllow(t, r, "k", rule)
				got = append(got, last.Allowed)
			}

			if !slices.Equal(got, tt.want) {
				t.Errorf("decisions = %v, want %v", got, tt.want)
			}

			if tt.mode == ratelimit.FailClosed && last.RetryAfter != 3*time.Second {
				t.Errorf("closed: RetryAfter = %v, want the probe interval 3s", last.RetryAfter)
			}
		})
	}
}

// TestRedisReloadsFlushedScript checks the EVALSHA → EVAL fallback: after
// SCRIPT FLUSH the next call still succeeds against Redis.
func TestRedisReloadsFlushedScript(t *testing.T) {
	srv := startRedisServer(t)
	admin := newRedisClient(t, srv.Addr())
	r, err := ratelimit.NewRedis(newRedisClient(t, srv.Addr()))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}

	rule := ratelimit.Rule{Rate: 0.001, Burst: 3}
	mustAllow(t, r, "k", rule)
	if err := admin.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}

	d := mustAllow(t, r, "k", rule)
	if !d.Allowed || d.Remaining != 1 || !r.Reachable() {
		t.Errorf("after SCRIPT FLUSH: %+v, reachable %v; want the second token from Redis",
			d, r.Reachable())
	}
}

// TestRedisKeysExpireWhenFull checks that a key lives only until its
// bucket would be full again.
func TestRedisKeysExpireWhenFull(t *testing.T) {
	srv := startRedisServer(t)
	admin := newRedisClient(t, srv.Addr())
	clock := newFakeClock()
	r, err := ratelimit.NewRedis(newRedisClient(t, srv.Addr()), ratelimit.WithPrefix("t:"),
		ratelimit.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}

	// Two tokens spent from a bucket of 5 refilling 1 per 10s: full in 20s.
	rule := ratelimit.Rule{Rate: 0.1, Burst: 5}
	mustAllow(t, r, "k", rule)
	d := mustAllow(t, r, "k", rule)

	ttl, err := admin.PTTL(context.Background(), "t:k").Result()
	if err != nil {
		t.Fatalf("PTTL: %v", err)
	}

	// Redis counts the TTL down on its own clock, so it is at most 20s.
	if d.ResetAfter != 20*time.Second || ttl <= 0 || ttl > d.ResetAfter {
		t.Errorf("key TTL %v with ResetAfter %v, want ResetAfter 20s and a TTL up to it", ttl,
			d.ResetAfter)
	}
}

func TestNewRedisRejectsBadOptions(t *testing.T) {
	client := newRedisClient(t, closedPort(t))

	tests := []struct {
		name string
		opt  ratelimit.Option
	}{
		{name: "unknown failure mode", opt: ratelimit.WithFailureMode("maybe")},
		{name: "zero probe interval", opt: ratelimit.WithProbeInterval(0)},
		{name: "negative timeout", opt: ratelimit.WithTimeout(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ratelimit.NewRedis(client, tt.opt)
			if !errors.Is(err, ratelimit.ErrInvalidOption) {
				t.Fatalf("NewRedis: got %v, want ErrInvalidOption", err)
			}
		})
	}

	if _, err := ratelimit.NewRedis(nil); !errors.Is(err, ratelimit.ErrInvalidOption) {
		t.Errorf("NewRedis(nil): got %v, want ErrInvalidOption", err)
	}
}

// closedPort returns a 127.0.0.1 address where nothing listens any more.
func closedPort(t *testing.T) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}

	return addr
}
