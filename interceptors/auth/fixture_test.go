package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/devissuer"
	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1" // registers descriptors
	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"  // registers descriptors
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/reflect/protoregistry"
)

const audience = "gatehouse"

// clock is a settable time source shared by the issuer and the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

// fixture is a real dev issuer on 127.0.0.1, a started verifier that finds
// its keys through OpenID discovery, the Gatehouse policy and a Guard.
type fixture struct {
	clock     *clock
	issuer    *devissuer.Issuer
	issuerURL string
	ring      *devissuer.KeyRing
	// retired holds the keys the issuer had before a rotation whose grace
	// period is over: their kids are no longer published.
	retired  *devissuer.KeyRing
	verifier *jwtauth.Verifier
	policy   *authz.Policy
	guard    *auth.Guard

	jwksFetches atomic.Int64
	down        atomic.Bool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()

	f := &fixture{clock: &clock{t: time.Now().Truncate(time.Second)}}
	f.startIssuer(t)
	f.startVerifier(t)

	services, err := authz.FindServices(protoregistry.GlobalFiles,
		"gatehouse.catalog.v1.CatalogService", "gatehouse.orders.v1.OrderService")
	if err != nil {
		t.Fatalf("FindServices: %v", err)
	}
	f.policy, err = authz.Load(services)
	if err != nil {
		t.Fatalf("Load policy: %v", err)
	}

	f.guard, err = auth.New(f.verifier, f.policy)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}

	return f
}

func (f *fixture) startIssuer(t *testing.T) {
	t.Helper()

	ring, err := devissuer.GenerateKeyRing()
	if err != nil {
		t.Fatalf("GenerateKeyRing: %v", err)
	}

	// Keep a copy of the first keys, then rotate them out for good.
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := ring.Save(path); err != nil {
		t.Fatalf("save keys: %v", err)
	}
	if f.retired, err = devissuer.LoadKeyRing(path); err != nil {
		t.Fatalf("load keys: %v", err)
	}
	if err := ring.Rotate(f.clock.Now().Add(-2*time.Hour), time.Hour); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	f.ring = ring

	srv := httptest.NewUnstartedServer(nil)
	f.issuerURL = "http://" + srv.Listener.Addr().String()
	f.issuer, err = devissuer.New(devissuer.Config{
		Issuer:   f.issuerURL,
		Audience: audience,
		Clients: []devissuer.Client{
			{ID: "writer", Secret: "writer-secret", Scopes: []string{"orders.read", "orders.write"}},
			{ID: "reader", Secret: "reader-secret", Scopes: []string{"orders.read"}},
		},
	}, ring, devissuer.WithClock(f.clock.Now))
	if err != nil {
		t.Fatalf("devissuer.New: %v", err)
	}

	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == devissuer.JWKSPath {
			f.jwksFetches.Add(1)
		}
		if f.down.Load() && r.URL.Path != devissuer.TokenPath {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		f.issuer.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
}

func (f *fixture) startVerifier(t *testing.T) {
	t.Helper()

	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer:     f.issuerURL,
		Audiences:  []string{audience},
		Algorithms: []string{jwtauth.ES256, jwtauth.RS256},
		Discovery:  true,
	}}, jwtauth.WithClock(f.clock.Now), jwtauth.WithRefreshCooldown(time.Minute))
	if err != nil {
		t.Fatalf("jwtauth.New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })

	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	f.verifier = v
}

// claims returns valid claims for subject with scopes at the fixture time.
func (f *fixture) claims(subject string, scopes ...string) devissuer.TokenClaims {
	now := f.clock.Now()
	return devissuer.TokenClaims{
		Issuer:   f.issuerURL,
		Subject:  subject,
		Audience: []string{audience},
		ClientID: "test-client",
		Scopes:   scopes,
		IssuedAt: now,
		Expiry:   now.Add(10 * time.Minute),
	}
}

// mint signs c with the issuer's active key for alg.
func (f *fixture) mint(t *testing.T, alg string, c devissuer.TokenClaims) string {
	t.Helper()

	token, err := f.ring.Mint(alg, c)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}

	return token
}

// mintWith signs c after edit changes it.
func (f *fixture) mintWith(t *testing.T, edit func(*devissuer.TokenClaims)) string {
	t.Helper()

	c := f.claims("alice", "orders.read", "orders.write")
	edit(&c)

	return f.mint(t, devissuer.ES256, c)
}

// clientToken gets a token from the issuer's token endpoint with the
// client-credentials grant, over a real HTTP client.
func (f *fixture) clientToken(t *testing.T, id, secret string) string {
	t.Helper()

	req, err := http.NewRequest(http.MethodPost, f.issuerURL+devissuer.TokenPath,
		strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST token: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	var body struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST token: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode token response: %v", err)
	}

	return body.AccessToken
}

// foreignToken is signed by a key the issuer never published, under kid.
func (f *fixture) foreignToken(t *testing.T, kid string) string {
	t.Helper()

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}

	return signRaw(t, jose.ES256, priv, kid, f.rawClaims())
}

// rawClaims are valid claims as a map, for hand-made tokens.
func (f *fixture) rawClaims() map[string]any {
	now := f.clock.Now()
	return map[string]any{
		"iss": f.issuerURL, "sub": "mallory", "aud": audience,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"scope": "orders.read orders.write",
	}
}

func signRaw(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string,
	claims map[string]any) string {
	t.Helper()

	opts := (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}

	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("marshal: %v", err)
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

// unsigned builds an "alg: none" token by hand: no library will sign one.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()

	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	enc := base64.RawURLEncoding.EncodeToString

	return enc([]byte(`{"alg":"none"}`)) + "." + enc(payload) + "."
}

// rsaPublicJWK returns the issuer's published RS256 key.
func (f *fixture) rsaPublicJWK(t *testing.T) jose.JSONWebKey {
	t.Helper()

	for _, k := range f.ring.JWKS(f.clock.Now()).Keys {
		if k.Algorithm == devissuer.RS256 && k.KeyID == f.ring.KeyID(devissuer.RS256) {
			return k
		}
	}
	t.Fatal("no RS256 key published")

	return jose.JSONWebKey{}
}

// publicKeyPEM is what an attacker would use as an HMAC secret: the
// issuer's RSA public key in PEM form.
func publicKeyPEM(t *testing.T, k jose.JSONWebKey) []byte {
	t.Helper()

	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
