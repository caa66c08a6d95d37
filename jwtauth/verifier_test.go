package jwtauth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
	jose "github.com/go-jose/go-jose/v4"
)

// fixture is a verifier for testIssuer whose keys come from a JWKS server.
type fixture struct {
	clock *clock
	jwks  *jwksServer
	v     *jwtauth.Verifier
}

func newFixtureWithKeys(
	t *testing.T,
	cfg func(*jwtauth.IssuerConfig),
	opts []jwtauth.Option,
	keys ...*testKey,
) *fixture {
	t.Helper()

	f := &fixture{clock: newClock(), jwks: newJWKSServer(t, keys...)}
	ic := jwtauth.IssuerConfig{
		Issuer:    testIssuer,
		Audiences: []string{testAudience},
		JWKSURL:   f.jwks.URL,
	}
	if cfg != nil {
		cfg(&ic)
	}

	opts = append([]jwtauth.Option{jwtauth.WithClock(f.clock.Now)}, opts...)
	v, err := jwtauth.New([]jwtauth.IssuerConfig{ic}, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })

	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	f.v = v

	return f
}

func TestVerifyAlgorithms(t *testing.T) {
	algs := []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
	keys := make([]*testKey, 0, len(algs))
	for _, alg := range algs {
		keys = append(keys, newKey(t, alg, "kid-"+alg))
	}
	f := newFixtureWithKeys(t, nil, nil, keys...)

	for _, k := range keys {
		t.Run(k.alg, func(t *testing.T) {
			token := k.sign(t, claimsAt(f.clock.Now()), nil)

			p, err := f.v.Verify(context.Background(), token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != "alice" || p.Issuer != testIssuer {
				t.Errorf("principal = %q from %q, want alice from %q", p.Subject, p.Issuer, testIssuer)
			}
		})
	}
}

func TestVerifyPrincipal(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	f := newFixtureWithKeys(t, nil, nil, key)
	base := claimsAt(f.clock.Now())

	tests := []struct {
		name       string
		claims     map[string]any
		wantClient string
		wantScopes []string
		wantRoles  []string
	}{
		{
			name:       "scope string, client_id",
			claims:     with(base, "client_id", "web"),
			wantClient: "web",
			wantScopes: []string{"orders.read", "orders.write"},
		},
		{
			name:       "scp array and azp",
			claims:     with(base, "scope", nil, "scp", []string{"a", "b"}, "azp", "cli"),
			wantClient: "cli",
			wantScopes: []string{"a", "b"},
		},
		{
			name:       "scp string merged with scope, client_id wins over azp",
			claims:     with(base, "scp", "orders.read c", "client_id", "x", "azp", "y"),
			wantClient: "x",
			wantScopes: []string{"orders.read", "orders.write", "c"},
		},
		{
			name:       "roles array",
			claims:     with(base, "roles", []string{"admin", "ops"}),
			wantScopes: []string{"orders.read", "orders.write"},
			wantRoles:  []string{"admin", "ops"},
		},
		{
			name:       "roles string, audience array",
			claims:     with(base, "roles", "admin", "aud", []string{"other", testAudience}),
			wantScopes: []string{"orders.read", "orders.write"},
			wantRoles:  []string{"admin"},
		},
		{
			name:       "no scope at all",
			claims:     with(base, "scope", nil),
			wantScopes: nil,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Verify(context.Background(), key.sign(t, tt.claims, nil))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}

			if p.ClientID != tt.wantClient {
				t.Errorf("ClientID = %q, want %q", p.ClientID, tt.wantClient)
			}
			if !slices.Equal(p.Scopes, tt.wantScopes) {
				t.Errorf("Scopes = %q, want %q", p.Scopes, tt.wantScopes)
			}
			if !slices.Equal(p.Roles, tt.wantRoles) {
				t.Errorf("Roles = %q, want %q", p.Roles, tt.wantRoles)
			}
			if want := time.Unix(base["exp"].(int64), 0); !p.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", p.Expiry, want)
			}
			if got, ok := p.Claims["sub"].(string); !ok || got != "alice" {
				t.Errorf(`Claims["sub"] = %v, want "alice"`, p.Claims["sub"])
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := newKey(t, "RS256", "k1")
	f := newFixtureWithKeys(t, nil, []jwtauth.Option{jwtauth.WithLeeway(30 * time.Second)}, key)
	now := f.clock.Now()
	base := claimsAt(now)
	other := newKey(t, "RS256", "k1") // same kid, different key

	pubDER, err := x509.MarshalPKIXPublicKey(key.priv.Public())
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hsOpts := (&jose.SignerOptions{}).WithHeader("kid", "k1")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", jwtauth.ErrMalformedToken},
		{"garbage", "not-a-token", jwtauth.ErrMalformedToken},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.e30", jwtauth.ErrMalformedToken},
		{"alg none", unsignedToken(t, base), jwtauth.ErrAlgorithmNotAllowed},
		{"HS256 keyed with the RSA public key",
			signWith(t, jose.HS256, pubPEM, base, hsOpts), jwtauth.ErrAlgorithmNotAllowed},
		{"HS512 not supported at all",
			signWith(t, jose.HS512, make([]byte, 64), base, hsOpts), jwtauth.ErrAlgorithmNotAllowed},
		{"signed by another key under our kid", other.sign(t, base, nil), jwtauth.ErrBadSignature},
		{"unknown kid", newKey(t, "RS256", "k9").sign(t, base, nil), jwtauth.ErrUnknownKey},
		{"ES256 token under an RSA kid",
			(&testKey{alg: "ES256", priv: newKey(t, "ES256", "x").priv,
				jwk: jose.JSONWebKey{KeyID: "k1"}}).sign(t, base, nil), jwtauth.ErrUnknownKey},
		{"expired beyond leeway",
			key.sign(t, with(base, "exp", now.Add(-31*time.Second).Unix()), nil),
			jwtauth.ErrTokenExpired},
		{"nbf beyond leeway",
			key.sign(t, with(base, "nbf", now.Add(31*time.Second).Unix()), nil),
			jwtauth.ErrTokenNotYetValid},
		{"iat in the future",
			key.sign(t, with(base, "iat", now.Add(time.Hour).Unix()), nil),
			jwtauth.ErrTokenNotYetValid},
		{"no exp", key.sign(t, with(base, "exp", nil), nil), jwtauth.ErrMissingClaim},
		{"no sub", key.sign(t, with(base, "sub", nil), nil), jwtauth.ErrMissingClaim},
		{"empty sub", key.sign(t, with(base, "sub", ""), nil), jwtauth.ErrMissingClaim},
		{"wrong issuer", key.sign(t, with(base, "iss", "https://evil.test"), nil),
			jwtauth.ErrUnknownIssuer},
		{"wrong audience", key.sign(t, with(base, "aud", "billing"), nil),
			jwtauth.ErrWrongAudience},
		{"audience array without us",
			key.sign(t, with(base, "aud", []string{"a", "b"}), nil), jwtauth.ErrWrongAudience},
		{"no audience", key.sign(t, with(base, "aud", nil), nil), jwtauth.ErrWrongAudience},
		{"sub not a string", key.sign(t, with(base, "sub", 42), nil), jwtauth.ErrMalformedToken},
		{"exp not a number", key.sign(t, with(base, "exp", "soon"), nil),
			jwtauth.ErrMalformedToken},
		{"roles of numbers", key.sign(t, with(base, "roles", []int{1}), nil),
			jwtauth.ErrMalformedToken},
		{"typ of another token type",
			key.sign(t, base, map[string]any{"typ": "dpop+jwt"}), jwtauth.ErrMalformedToken},
		{"oversize", key.sign(t, with(base, "pad", strings.Repeat("a", 9000)), nil),
			jwtauth.ErrTokenTooLarge},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if p != nil {
				t.Errorf("Verify returned principal %+v with an error", p)
			}
		})
	}
}

func TestVerifyLeewayEdges(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	f := newFixtureWithKeys(t, nil, []jwtauth.Option{
		jwtauth.WithLeeway(30 * time.Second), jwtauth.WithCacheSize(0),
	}, key)
	now := f.clock.Now()
	base := claimsAt(now)

	tests := []struct {
		name   string
		claims map[string]any
		want   error
	}{
		{"expired within leeway", with(base, "exp", now.Add(-29*time.Second).Unix()), nil},
		{"expired exactly at leeway", with(base, "exp", now.Add(-30*time.Second).Unix()),
			jwtauth.ErrTokenExpired},
		{"nbf within leeway", with(base, "nbf", now.Add(30*time.Second).Unix()), nil},
		{"iat within leeway", with(base, "iat", now.Add(30*time.Second).Unix()), nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), key.sign(t, tt.claims, nil))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHS256(t *testing.T) {
	rsaKey := newKey(t, "RS256", "r1")
	secret := []byte(strings.Repeat("s", 32))
	f := newFixtureWithKeys(t, func(c *jwtauth.IssuerConfig) {
		c.Algorithms = []string{jwtauth.RS256, jwtauth.HS256}
		c.HMACSecret = secret
	}, nil, rsaKey)
	base := claimsAt(f.clock.Now())

	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	kid := (&jose.SignerOptions{}).WithHeader("kid", "r1")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"shared secret", signWith(t, jose.HS256, secret, base, nil), nil},
		{"RSA public key as the secret", signWith(t, jose.HS256, pubPEM, base, kid),
			jwtauth.ErrBadSignature},
		{"RSA still works", rsaKey.sign(t, base, nil), nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAlgorithmAllowlistPerIssuer(t *testing.T) {
	es := newKey(t, "ES256", "e1")
	rs := newKey(t, "RS256", "r1")
	f := newFixtureWithKeys(t, func(c *jwtauth.IssuerConfig) {
		c.Algorithms = []string{jwtauth.ES256}
	}, nil, es, rs)
	base := claimsAt(f.clock.Now())

	if _, err := f.v.Verify(context.Background(), es.sign(t, base, nil)); err != nil {
		t.Fatalf("ES256 token: %v", err)
	}
	_, err := f.v.Verify(context.Background(), rs.sign(t, base, nil))
	if !errors.Is(err, jwtauth.ErrAlgorithmNotAllowed) {
		t.Fatalf("RS256 token on an ES256-only issuer: error = %v, want %v",
			err, jwtauth.ErrAlgorithmNotAllowed)
	}
}

func TestSeveralIssuers(t *testing.T) {
	clk := newClock()
	k1, k2 := newKey(t, "ES256", "a"), newKey(t, "RS256", "b")
	s1, s2 := newJWKSServer(t, k1), newJWKSServer(t, k2)

	v, err := jwtauth.New([]jwtauth.IssuerConfig{
		{Issuer: "https://one.test", Audiences: []string{"api"}, JWKSURL: s1.URL},
		{Issuer: "https://two.test", Audiences: []string{"other"}, JWKSURL: s2.URL},
	}, jwtauth.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}

	one := with(claimsAt(clk.Now()), "iss", "https://one.test", "aud", "api")
	two := with(claimsAt(clk.Now()), "iss", "https://two.test", "aud", "other")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"issuer one", k1.sign(t, one, nil), nil},
		{"issuer two", k2.sign(t, two, nil), nil},
		{"issuer two signed with the key of one", k1.sign(t, two, nil),
			jwtauth.ErrUnknownKey},
		{"issuer one with the audience of two", k1.sign(t, with(one, "aud", "other"), nil),
			jwtauth.ErrWrongAudience},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRotationAndCooldown(t *testing.T) {
	old := newKey(t, "ES256", "old")
	f := newFixtureWithKeys(t, nil, []jwtauth.Option{
		jwtauth.WithRefreshCooldown(time.Minute),
	}, old)
	ctx := context.Background()

	if n := f.jwks.fetches(); n != 1 {
		t.Fatalf("fetches after Start = %d, want 1", n)
	}

	// Later, the issuer rotates: new key published, old one removed.
	f.clock.Advance(time.Minute)
	fresh := newKey(t, "ES256", "new")
	f.jwks.publish(t, fresh)

	if _, err := f.v.Verify(ctx, fresh.sign(t, claimsAt(f.clock.Now()), nil)); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if n := f.jwks.fetches(); n != 2 {
		t.Fatalf("fetches after the new kid = %d, want 2", n)
	}

	// A second new kid, and the removed one, inside the cool-down: no fetch.
	stranger := newKey(t, "ES256", "stranger")
	for _, tok := range []string{
		stranger.sign(t, claimsAt(f.clock.Now()), nil),
		old.sign(t, claimsAt(f.clock.Now()), nil),
		stranger.sign(t, with(claimsAt(f.clock.Now()), "jti", "2"), nil),
	} {
		if _, err := f.v.Verify(ctx, tok); !errors.Is(err, jwtauth.ErrUnknownKey) {
			t.Fatalf("Verify error = %v, want %v", err, jwtauth.ErrUnknownKey)
		}
	}
	if n := f.jwks.fetches(); n != 2 {
		t.Fatalf("fetches inside the cool-down = %d, want still 2", n)
	}

	// After the cool-down one more fetch is allowed, and the set now has it.
	f.jwks.publish(t, fresh, stranger)
	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(ctx, stranger.sign(t, claimsAt(f.clock.Now()), nil)); err != nil {
		t.Fatalf("token of a key published after the cool-down: %v", err)
	}
	if n := f.jwks.fetches(); n != 3 {
		t.Fatalf("fetches after the cool-down = %d, want 3", n)
	}
}

func TestStaleKeys(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	f := newFixtureWithKeys(t, nil, []jwtauth.Option{
		jwtauth.WithRefreshInterval(time.Minute),
		jwtauth.WithMaxStaleness(time.Hour),
	}, key)
	ctx := context.Background()
	token := key.sign(t, with(claimsAt(f.clock.Now()), "exp", f.clock.Now().Add(3*time.Hour).Unix()),
		nil)

	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("Verify with fresh keys: %v", err)
	}

	// The JWKS endpoint goes away for real: refreshes fail, keys stay.
	f.jwks.Close()
	f.clock.Advance(59 * time.Minute)
	if err := f.v.Refresh(ctx); err == nil {
		t.Fatal("Refresh with the JWKS server closed succeeded")
	}
	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("Verify with cached keys while the JWKS is down: %v", err)
	}
	if err := f.v.Ready(); err != nil {
		t.Fatalf("Ready with cached keys: %v", err)
	}

	// Past the maximum staleness, even the cached token is refused.
	f.clock.Advance(2 * time.Minute)
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, jwtauth.ErrKeysUnavailable) {
		t.Fatalf("Verify with stale keys: error = %v, want %v", err, jwtauth.ErrKeysUnavailable)
	}
	if err := f.v.Ready(); !errors.Is(err, jwtauth.ErrKeysUnavailable) {
		t.Fatalf("Ready with stale keys = %v, want %v", err, jwtauth.ErrKeysUnavailable)
	}
}

func TestCachedTokenDroppedWithItsKey(t *testing.T) {
	k1, k2 := newKey(t, "ES256", "k1"), newKey(t, "ES256", "k2")
	f := newFixtureWithKeys(t, nil, nil, k1, k2)
	ctx := context.Background()
	token := k1.sign(t, claimsAt(f.clock.Now()), nil)

	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	f.jwks.publish(t, k2)
	if err := f.v.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}

	if _, err := f.v.Verify(ctx, token); !errors.Is(err, jwtauth.ErrUnknownKey) {
		t.Fatalf("cached token of a removed key: error = %v, want %v", err, jwtauth.ErrUnknownKey)
	}
}

func TestCachedTokenDroppedWhenItsKidIsReused(t *testing.T) {
	first := newKey(t, "ES256", "k1")
	f := newFixtureWithKeys(t, nil, nil, first)
	ctx := context.Background()
	token := first.sign(t, claimsAt(f.clock.Now()), nil)

	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// The issuer publishes another key under the same kid.
	f.jwks.publish(t, newKey(t, "ES256", "k1"))
	if err := f.v.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}

	if _, err := f.v.Verify(ctx, token); !errors.Is(err, jwtauth.ErrBadSignature) {
		t.Fatalf("cached token after its kid changed key: error = %v, want %v",
			err, jwtauth.ErrBadSignature)
	}
}

func TestCachedTokenNeverOutlivesExp(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	f := newFixtureWithKeys(t, nil, []jwtauth.Option{jwtauth.WithLeeway(0)}, key)
	ctx := context.Background()
	token := key.sign(t, with(claimsAt(f.clock.Now()), "exp", f.clock.Now().Add(time.Minute).Unix()),
		nil)

	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, jwtauth.ErrTokenExpired) {
		t.Fatalf("Verify at exp: error = %v, want %v", err, jwtauth.ErrTokenExpired)
	}
}

func TestStartFailsWithoutKeys(t *testing.T) {
	s := newJWKSServer(t)
	s.setDown(true)

	v, err := jwtauth.New([]jwtauth.IssuerConfig{
		{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: s.URL},
	}, jwtauth.WithRefreshCooldown(time.Hour))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })

	if err := v.Ready(); !errors.Is(err, jwtauth.ErrKeysUnavailable) {
		t.Fatalf("Ready before Start = %v, want %v", err, jwtauth.ErrKeysUnavailable)
	}
	if err := v.Start(context.Background()); err == nil {
		t.Fatal("Start with the JWKS endpoint failing succeeded")
	}

	s.setDown(false)
	s.publish(t, newKey(t, "ES256", "k1"))
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start again once the endpoint answers: %v", err)
	}
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready after Start: %v", err)
	}
	if err := v.Start(context.Background()); err == nil {
		t.Fatal("second successful Start did not fail")
	}
}

func TestRefreshLoop(t *testing.T) {
	s := newJWKSServer(t, newKey(t, "ES256", "k1"))
	v, err := jwtauth.New([]jwtauth.IssuerConfig{
		{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: s.URL},
	}, jwtauth.WithRefreshInterval(10*time.Millisecond))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}

	// Start's own fetch, then two made by the refresh goroutine.
	for i := range 3 {
		select {
		case <-s.hits:
		case <-time.After(10 * time.Second):
			t.Fatalf("JWKS fetch %d did not happen", i+1)
		}
	}

	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestJWKSFile(t *testing.T) {
	key := newKey(t, "EdDSA", "f1")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(t, key), 0o600); err != nil {
		t.Fatalf("write JWKS file: %v", err)
	}

	clk := newClock()
	v, err := jwtauth.New([]jwtauth.IssuerConfig{
		{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: path},
	}, jwtauth.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}

	if _, err := v.Verify(context.Background(), key.sign(t, claimsAt(clk.Now()), nil)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestJWKSFiltering(t *testing.T) {
	good := newKey(t, "ES256", "good")
	weak := newKey(t, "ES256", "weak")
	sym := []byte(strings.Repeat("k", 32))
	body, err := json.Marshal(map[string]any{"keys": []any{
		good.jwk,
		map[string]any{"kty": "oct", "kid": "sym", "k": base64.RawURLEncoding.EncodeToString(sym)},
		map[string]any{"kty": "EC", "kid": "weird", "crv": "P-999", "x": "AA", "y": "AA"},
		jose.JSONWebKey{Key: weak.priv.Public(), KeyID: "enc", Use: "enc"},
	}})
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatalf("write JWKS file: %v", err)
	}

	clk := newClock()
	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: path,
		Algorithms: []string{jwtauth.ES256, jwtauth.HS256}, HMACSecret: make([]byte, 32),
	}}, jwtauth.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start with one usable key among odd ones: %v", err)
	}

	encKey := &testKey{alg: "ES256", priv: weak.priv, jwk: jose.JSONWebKey{KeyID: "enc"}}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"usable key", good.sign(t, claimsAt(clk.Now()), nil), nil},
		{"encryption key never verifies", encKey.sign(t, claimsAt(clk.Now()), nil),
			jwtauth.ErrUnknownKey},
		{"oct key from the JWKS is not an HMAC secret",
			signWith(t, jose.HS256, sym, claimsAt(clk.Now()),
				(&jose.SignerOptions{}).WithHeader("kid", "sym")), jwtauth.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	ok := jwtauth.IssuerConfig{Issuer: testIssuer, Audiences: []string{"a"},
		JWKSURL: "https://127.0.0.1/jwks"}

	tests := []struct {
		name string
		cfg  func(*jwtauth.IssuerConfig)
		opts []jwtauth.Option
	}{
		{"empty issuer", func(c *jwtauth.IssuerConfig) { c.Issuer = "" }, nil},
		{"no audience", func(c *jwtauth.IssuerConfig) { c.Audiences = nil }, nil},
		{"empty audience", func(c *jwtauth.IssuerConfig) { c.Audiences = []string{""} }, nil},
		{"unknown algorithm", func(c *jwtauth.IssuerConfig) { c.Algorithms = []string{"ES512"} },
			nil},
		{"none algorithm", func(c *jwtauth.IssuerConfig) { c.Algorithms = []string{"none"} }, nil},
		{"HS256 without secret", func(c *jwtauth.IssuerConfig) {
			c.Algorithms = []string{jwtauth.HS256}
		}, nil},
		{"short secret", func(c *jwtauth.IssuerConfig) {
			c.Algorithms, c.HMACSecret = []string{jwtauth.HS256}, make([]byte, 31)
		}, nil},
		{"secret without HS256", func(c *jwtauth.IssuerConfig) {
			c.HMACSecret = make([]byte, 32)
		}, nil},
		{"no key source", func(c *jwtauth.IssuerConfig) { c.JWKSURL = "" }, nil},
		{"two key sources", func(c *jwtauth.IssuerConfig) { c.JWKSFile = "/x" }, nil},
		{"plain http off loopback", func(c *jwtauth.IssuerConfig) {
			c.JWKSURL = "http://keys.test/jwks"
		}, nil},
		{"discovery over plain http off loopback", func(c *jwtauth.IssuerConfig) {
			c.JWKSURL, c.Discovery, c.Issuer = "", true, "http://issuer.test"
		}, nil},
		{"negative leeway", nil, []jwtauth.Option{jwtauth.WithLeeway(-time.Second)}},
		{"huge leeway", nil, []jwtauth.Option{jwtauth.WithLeeway(time.Hour)}},
		{"zero token size", nil, []jwtauth.Option{jwtauth.WithMaxTokenSize(0)}},
		{"staleness below refresh", nil, []jwtauth.Option{
			jwtauth.WithRefreshInterval(time.Hour), jwtauth.WithMaxStaleness(time.Minute)}},
		{"zero cool-down", nil, []jwtauth.Option{jwtauth.WithRefreshCooldown(0)}},
		{"negative cache", nil, []jwtauth.Option{jwtauth.WithCacheSize(-1)}},
		{"nil logger", nil, []jwtauth.Option{jwtauth.WithLogger(nil)}},
		{"nil clock", nil, []jwtauth.Option{jwtauth.WithClock(nil)}},
		{"nil HTTP client", nil, []jwtauth.Option{jwtauth.WithHTTPClient(nil)}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}

			if _, err := jwtauth.New([]jwtauth.IssuerConfig{cfg}, tt.opts...); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		if _, err := jwtauth.New([]jwtauth.IssuerConfig{ok}); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
	t.Run("no issuer", func(t *testing.T) {
		if _, err := jwtauth.New(nil); err == nil {
			t.Fatal("New without issuers succeeded")
		}
	})
	t.Run("duplicate issuer", func(t *testing.T) {
		if _, err := jwtauth.New([]jwtauth.IssuerConfig{ok, ok}); err == nil {
			t.Fatal("New with the same issuer twice succeeded")
		}
	})
}

func TestPrincipalContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := jwtauth.PrincipalFrom(ctx); ok {
		t.Fatal("PrincipalFrom found a principal in an empty context")
	}

	p := &jwtauth.Principal{Subject: "alice", Scopes: []string{"a"}, Roles: []string{"r"}}
	got, ok := jwtauth.PrincipalFrom(jwtauth.WithPrincipal(ctx, p))
	if !ok || got != p {
		t.Fatalf("PrincipalFrom = %v, %v; want the stored principal", got, ok)
	}
	if !got.HasScope("a") || got.HasScope("b") || !got.HasRole("r") || got.HasRole("x") {
		t.Errorf("HasScope/HasRole disagree with Scopes %q and Roles %q", got.Scopes, got.Roles)
	}
	if _, ok := jwtauth.PrincipalFrom(jwtauth.WithPrincipal(ctx, nil)); ok {
		t.Error("PrincipalFrom reported a nil principal as present")
	}
}
