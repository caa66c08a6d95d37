package jwtauth

import (
	"context"
	"fmt"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestTokenCache(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	entry := func(b byte, ttl time.Duration) *cacheEntry {
		return &cacheEntry{digest: tokenDigest{b}, principal: &Principal{Subject: string(b)},
			expiry: now.Add(ttl)}
	}

	tests := []struct {
		name    string
		run     func(c *tokenCache)
		present []byte
		absent  []byte
		wantLen int
	}{
		{
			name: "evicts the least recently used",
			run: func(c *tokenCache) {
				c.add(entry('a', time.Hour))
				c.add(entry('b', time.Hour))
				c.get(tokenDigest{'a'}, now) // a is now the most recent
				c.add(entry('c', time.Hour))
			},
			present: []byte{'a', 'c'},
			absent:  []byte{'b'},
			wantLen: 2,
		},
		{
			name: "drops an entry at its expiry",
			run: func(c *tokenCache) {
				c.add(entry('a', 0))
				c.add(entry('b', time.Second))
			},
			present: []byte{'b'},
			absent:  []byte{'a'},
			wantLen: 1,
		},
		{
			name: "replacing keeps one entry",
			run: func(c *tokenCache) {
				c.add(entry('a', time.Hour))
				c.add(entry('a', time.Hour))
			},
			present: []byte{'a'},
			wantLen: 1,
		},
		{
			name: "remove",
			run: func(c *tokenCache) {
				c.add(entry('a', time.Hour))
				c.remove(tokenDigest{'a'})
			},
			absent:  []byte{'a'},
			wantLen: 0,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTokenCache(2)
			tt.run(c)

			for _, b := range tt.absent {
				if _, ok := c.get(tokenDigest{b}, now); ok {
					t.Errorf("entry %c still cached", b)
				}
			}
			for _, b := range tt.present {
				if e, ok := c.get(tokenDigest{b}, now); !ok || e.principal.Subject != string(b) {
					t.Errorf("entry %c = %v, %v; want it cached", b, e, ok)
				}
			}
			if n := c.len(); n != tt.wantLen {
				t.Errorf("len = %d, want %d", n, tt.wantLen)
			}
		})
	}
}

func TestVerifierFillsCache(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_900_000_000, 0)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, nil)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	jws, err := signer.Sign([]byte(fmt.Sprintf(
		`{"iss":"hs","sub":"a","aud":"x","exp":%d}`, now.Add(time.Hour).Unix())))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}

	tests := []struct {
		name    string
		size    int
		wantLen int
	}{
		{"cache on", 4, 1},
		{"cache off", 0, 0},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New([]IssuerConfig{{Issuer: "hs", Audiences: []string{"x"},
				Algorithms: []string{HS256}, HMACSecret: secret}},
				WithCacheSize(tt.size), WithClock(func() time.Time { return now }))
			if err != nil {
				t.Fatalf("New: %v", err)
			}

			for range 3 {
				if _, err := v.Verify(context.Background(), token); err != nil {
					t.Fatalf("Verify: %v", err)
				}
			}

			got := 0
			if v.cache != nil {
				got = v.cache.len()
			}
			if got != tt.wantLen {
				t.Errorf("cached tokens = %d, want %d", got, tt.wantLen)
			}
		})
	}
}
