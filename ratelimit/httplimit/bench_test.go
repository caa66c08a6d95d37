package httplimit_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
)

// BenchmarkStages compares a handler without limiting to the same handler
// behind both stages on a local limiter, in process: what limiting adds to
// each request the gateway serves.
func BenchmarkStages(b *testing.B) {
	limiter, err := ratelimit.NewLocal()
	if err != nil {
		b.Fatalf("NewLocal: %v", err)
	}

	ips, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		b.Fatalf("clientip.New: %v", err)
	}

	generous := ratelimit.Policy{Default: ratelimit.Rule{Rate: ratelimit.MaxRate,
		Burst: ratelimit.MaxBurst}}
	perIP, err := httplimit.NewIPStage(limiter, generous, ips)
	if err != nil {
		b.Fatalf("NewIPStage: %v", err)
	}

	perPrincipal, err := httplimit.NewPrincipalStage(limiter, generous,
		func(*http.Request) (string, string, bool) { return "alice", "", true })
	if err != nil {
		b.Fatalf("NewPrincipalStage: %v", err)
	}

	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})

	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"off", api},
		{"on", perIP.Wrap(perPrincipal.Wrap(api))},
	}
	for _, hh := range handlers {
		b.Run(hh.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v1/products", nil)
			req.RemoteAddr = "10.0.0.2:40000"
			req.Header.Set("X-Forwarded-For", "198.51.100.7")

			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				hh.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
