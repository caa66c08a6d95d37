package jwtauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testKey is a signing key and its public JWK.
type testKey struct {
	alg  string
	priv crypto.Signer
	jwk  jose.JSONWebKey
}

// newKey generates a key for alg with kid.
func newKey(t testing.TB, alg, kid string) *testKey {
	t.Helper()

	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("newKey: unsupported alg %q", alg)
	}
	if err != nil {
		t.Fatalf("generate %s key: %v", alg, err)
	}

	return &testKey{
		alg:  alg,
		priv: priv,
		jwk:  jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"},
	}
}

// sign makes a compact JWS of claims with k, adding extra protected headers.
func (k *testKey) sign(t testing.TB, claims map[string]any, extra map[string]any) string {
	t.Helper()

	opts := &jose.SignerOptions{}
	opts.WithHeader(jose.HeaderKey("kid"), k.jwk.KeyID)
	for name, v := range extra {
		opts.WithHeader(jose.HeaderKey(name), v)
	}

	return signWith(t, jose.SignatureAlgorithm(k.alg), k.priv, claims, opts)
}

func signWith(
	t testing.TB,
	alg jose.SignatureAlgorithm,
	key any,
	claims map[string]any,
	opts *jose.SignerOptions,
) string {
	t.Helper()

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new %s signer: %v", alg, err)
	}

	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("marshal claims: %v", err)
	}

	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}

	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}

	return token
}

// unsignedToken builds an "alg: none" token by hand: no library will sign
// one, which is the point.
func unsignedToken(t testing.TB, claims map[string]any) string {
	t.Helper()

	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("marshal claims: %v", err)
	}
	enc := base64.RawURLEncoding.EncodeToString

	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// jwks renders a JWK set of the public keys.
func jwks(t testing.TB, keys ...*testKey) []byte {
	t.Helper()

	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk)
	}

	body, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}

	return body
}

// jwksServer is a real HTTP server on 127.0.0.1 publishing a JWKS that a
// test can change, take down, and count fetches of.
type jwksServer struct {
	*httptest.Server
	hits chan struct{}

	mu   sync.Mutex
	body []byte
	down bool
	n    int
}

func newJWKSServer(t testing.TB, keys ...*testKey) *jwksServer {
	t.Helper()

	s := &jwksServer{body: jwks(t, keys...), hits: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		s.n++
		body, down := s.body, s.down
		s.mu.Unlock()

		select {
		case s.hits <- struct{}{}:
		default:
		}

		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)

	return s
}

func (s *jwksServer) publish(t testing.TB, keys ...*testKey) {
	body := jwks(t, keys...)
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *jwksServer) fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.n
}

// clock is a settable time source, so tests move time instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_900_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	testIssuer   = "https://issuer.test"
	testAudience = "gatehouse"
)

// claimsAt returns a valid claim set for the test issuer at now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "alice",
		"aud":   testAudience,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(10 * time.Minute).Unix(),
		"scope": "orders.read orders.write",
	}
}

// with returns a copy of c with the given claims set, or removed when the
// value is nil.
func with(c map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, name)
			continue
		}
		out[name] = kv[i+1]
	}

	return out
}
