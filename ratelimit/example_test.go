package ratelimit_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

func ExampleLocal() {
	// A clock that stands still, so the output is exact.
	stopped := func() time.Time { return time.Unix(1_900_000_000, 0) }
	limiter, err := ratelimit.NewLocal(ratelimit.WithMaxKeys(10_000), ratelimit.WithClock(stopped))
	if err != nil {
		panic(err)
	}

	// Bursts of 2, then one request per second.
	rule := ratelimit.Rule{Rate: 1, Burst: 2}
	for range 3 {
		d, err := limiter.Allow(context.Background(), "client-42", rule)
		if err != nil {
			panic(err)
		}

		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter)
	}
	// Output:
	// true 1 0s
	// true 0 0s
	// false 0 1s
}

func ExampleGuard() {
	cfg, err := ratelimit.ParseConfig([]byte(`{
		"perPrincipal": {
			"default": {"rate": 10, "burst": 20},
			"routes": {"POST /v1/orders": {"rate": 1, "burst": 2}},
			"classes": {"gold": {"default": {"rate": 100, "burst": 200}}}
		}
	}`))
	if err != nil {
		panic(err)
	}

	limiter, err := ratelimit.Open(cfg)
	if err != nil {
		panic(err)
	}
	defer func() { _ = limiter.Close() }()

	guard, err := ratelimit.NewGuard("principal", limiter, *cfg.PerPrincipal)
	if err != nil {
		panic(err)
	}

	for _, r := range []struct{ method, path, class string }{
		{"POST", "/v1/orders", ""},
		{"GET", "/v1/products", ""},
		{"GET", "/v1/products", "gold"},
	} {
		req := httptest.NewRequest(r.method, "http://127.0.0.1"+r.path, nil)
		v, err := guard.CheckRequest(req, "", "alice", r.class)
		if err != nil {
			panic(err)
		}

		fmt.Printf("%s %s (%q): limit %d, scope %s\n", r.method, r.path, r.class, v.Limit, v.Scope)
	}
	// Output:
	// POST /v1/orders (""): limit 2, scope POST /v1/orders
	// GET /v1/products (""): limit 20, scope *
	// GET /v1/products ("gold"): limit 200, scope *
}
