package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/redis/go-redis/v9"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.now = c.now.Add(d)
}

// newRedisClient connects to a test Redis with the options Open uses.
func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()

	client := redis.NewClient(ratelimit.RedisClientOptions(addr, time.Second))
	t.Cleanup(func() { _ = client.Close() })

	return client
}

// startRedis starts a Redis for the test and returns it with a client.
func startRedis(t testing.TB) (*testsupport.RedisServer, *redis.Client) {
	t.Helper()

	srv := startRedisServer(t)

	return srv, newRedisClient(t, srv.Addr())
}

func startRedisServer(t testing.TB) *testsupport.RedisServer {
	t.Helper()

	return testsupport.StartRedis(t)
}

func mustAllow(
	t *testing.T,
	l ratelimit.Limiter,
	key string,
	rule ratelimit.Rule,
) ratelimit.Decision {
	t.Helper()

	d, err := l.Allow(context.Background(), key, rule)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, rule, err)
	}

	return d
}
