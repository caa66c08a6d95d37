package httplimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
)

func Example() {
	cfg := ratelimit.Config{
		PerIP:        &ratelimit.Policy{Default: ratelimit.Rule{Rate: 1, Burst: 3}},
		PerPrincipal: &ratelimit.Policy{Default: ratelimit.Rule{Rate: 1, Burst: 1}},
	}
	limiter, err := ratelimit.Open(cfg)
	if err != nil {
		panic(err)
	}
	defer func() { _ = limiter.Close() }()

	ips, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		panic(err)
	}

	perIP, err := httplimit.NewIPStage(limiter, *cfg.PerIP, ips)
	if err != nil {
		panic(err)
	}

	// A real gateway reads the principal its authentication middleware
	// stored in the request context.
	perPrincipal, err := httplimit.NewPrincipalStage(limiter, *cfg.PerPrincipal,
		func(r *http.Request) (string, string, bool) {
			sub := r.Header.Get("X-Example-Subject")
			return sub, "", sub != ""
		})
	if err != nil {
		panic(err)
	}

	api := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	// First = outermost: per-IP, then authentication, then per-principal.
	h := perIP.Wrap( /* authentication( */ perPrincipal.Wrap(api))

	for _, sub := range []string{"alice", "alice", "bob", "carol"} {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v1/products", nil)
		req.RemoteAddr = "198.51.100.7:40000"
		req.Header.Set("X-Example-Subject", sub)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Printf("%s: %d remaining=%s retry-after=%q\n", sub, rec.Code,
			rec.Header().Get("RateLimit-Remaining"), rec.Header().Get("Retry-After"))
	}
	// Output:
	// alice: 200 remaining=0 retry-after=""
	// alice: 429 remaining=0 retry-after="1"
	// bob: 200 remaining=0 retry-after=""
	// carol: 429 remaining=0 retry-after="1"
}
