package ratelimit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

// benchKeys is the number of distinct keys the many-keys benchmarks cycle
// through: more than fit in a CPU cache, fewer than the key ceiling.
const benchKeys = 10_000

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "principal|*|client-" + strconv.Itoa(i)
	}

	return keys
}

// generous keeps every request allowed, so the benchmarks measure the
// allowed path, which writes state.
var generous = ratelimit.Rule{Rate: ratelimit.MaxRate, Burst: ratelimit.MaxBurst}

func BenchmarkAllow(b *testing.B) {
	local, err := ratelimit.NewLocal()
	if err != nil {
		b.Fatalf("NewLocal: %v", err)
	}

	_, client := startRedis(b)
	redisLimiter, err := ratelimit.NewRedis(client)
	if err != nil {
		b.Fatalf("NewRedis: %v", err)
	}

	limiters := []struct {
		name string
		l    ratelimit.Limiter
	}{{"local", local}, {"redis", redisLimiter}}

	keys := benchKeyList()
	for _, lim := range limiters {
		b.Run(lim.name+"/one-key", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := lim.l.Allow(context.Background(), keys[0], generous); err != nil {
					b.Fatal(err)
				}
			}
		})

		b.Run(lim.name+"/many-keys", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := lim.l.Allow(context.Background(), keys[i%benchKeys],
					generous); err != nil {
					b.Fatal(err)
				}

				i++
			}
		})

		b.Run(lim.name+"/many-keys-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := lim.l.Allow(context.Background(), keys[i%benchKeys],
						generous); err != nil {
						b.Error(err)
						return
					}

					i++
				}
			})
		})
	}

	if !redisLimiter.Reachable() {
		b.Errorf("the Redis benchmark fell back to local limiting")
	}
}

// BenchmarkGuardCheckMethod is what an interceptor pays per call on top of
// Allow: picking the rule and building the bucket key.
func BenchmarkGuardCheckMethod(b *testing.B) {
	local, err := ratelimit.NewLocal()
	if err != nil {
		b.Fatalf("NewLocal: %v", err)
	}

	p := ratelimit.Policy{
		Default: generous,
		Methods: map[string]ratelimit.Rule{"/a.B/Expensive": generous},
	}
	g, err := ratelimit.NewGuard("principal", local, p)
	if err != nil {
		b.Fatalf("NewGuard: %v", err)
	}

	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.CheckMethod(context.Background(), "/a.B/Cheap", "alice", ""); err != nil {
			b.Fatal(err)
		}
	}
}
