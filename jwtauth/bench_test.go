package jwtauth_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

// BenchmarkVerify measures one Verify of the same valid token, per
// algorithm, with the verified-token cache on (every call after the first
// is a hit) and off (every call checks the signature).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		for _, cache := range []struct {
			name string
			size int
		}{{"cache", jwtauth.DefaultCacheSize}, {"nocache", 0}} {
			b.Run(alg+"/"+cache.name, func(b *testing.B) {
				clk := newClock()
				key := newKey(b, alg, "k")
				v := fileVerifier(b, clk, []jwtauth.Option{jwtauth.WithCacheSize(cache.size)}, key)
				token := key.sign(b, claimsAt(clk.Now()), nil)
				ctx := context.Background()

				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, token); err != nil {
						b.Fatalf("Verify: %v", err)
					}
				}
			})
		}
	}
}
