package devissuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/devissuer"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	jose "github.com/go-jose/go-jose/v4"
)

// clock is a settable time source.
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

var testClients = []devissuer.Client{
	{ID: "web", Secret: "s3cret:with/odd&chars", Scopes: []string{"orders.read", "orders.write"},
		Roles: []string{"clerk"}, Claims: map[string]string{"tenant": "acme"}},
	{ID: "batch", Secret: "batch-secret", Scopes: []string{"orders.read"}, Algorithm: "RS256"},
}

// server is a dev issuer on a real HTTP server on 127.0.0.1.
type server struct {
	*httptest.Server
	issuer *devissuer.Issuer
	ring   *devissuer.KeyRing
	clock  *clock
}

func newServer(t *testing.T, opts ...devissuer.Option) *server {
	t.Helper()

	ring, err := devissuer.GenerateKeyRing()
	if err != nil {
		t.Fatalf("GenerateKeyRing: %v", err)
	}

	s := &server{ring: ring, clock: &clock{t: time.Now().Truncate(time.Second)}}
	s.Server = httptest.NewUnstartedServer(nil)
	opts = append([]devissuer.Option{devissuer.WithClock(s.clock.Now)}, opts...)
	s.issuer, err = devissuer.New(devissuer.Config{
		Issuer:   "http://" + s.Listener.Addr().String(),
		Audience: "gatehouse",
		Clients:  testClients,
	}, ring, opts...)
	if err != nil {
		t.Fatalf("devissuer.New: %v", err)
	}
	s.Config.Handler = s.issuer
	s.Start()
	t.Cleanup(s.Close)

	return s
}

type tokenAnswer struct {
	status    int
	header    http.Header
	Token     string `json:"access_token"`
	Type      string `json:"token_type"`
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope"`
	Error     string `json:"error"`
}

// postToken sends a token request; basic is "id:secret" or "".
func (s *server) postToken(t *testing.T, method string, form url.Values, basic []string) tokenAnswer {
	t.Helper()

	req, err := http.NewRequest(method, s.URL+devissuer.TokenPath,
		strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}

	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s token: %v", method, err)
	}
	defer func() { _ = resp.Body.Close() }()

	a := tokenAnswer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("decode answer: %v", err)
	}

	return a
}

func TestTokenEndpoint(t *testing.T) {
	s := newServer(t)
	grant := url.Values{"grant_type": {"client_credentials"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vals := range grant {
			v[k] = vals
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	tests := []struct {
		name       string
		method     string
		form       url.Values
		basic      []string
		wantStatus int
		wantError  string
		wantScope  string
	}{
		{name: "basic auth", form: grant, basic: []string{"web", testClients[0].Secret},
			wantStatus: 200, wantScope: "orders.read orders.write"},
		{name: "form auth", form: with("client_id", "batch", "client_secret", "batch-secret"),
			wantStatus: 200, wantScope: "orders.read"},
		{name: "narrower scope", form: with("scope", "orders.read"),
			basic: []string{"web", testClients[0].Secret}, wantStatus: 200, wantScope: "orders.read"},
		{name: "scope not allowed", form: with("scope", "orders.read orders.write"),
			basic: []string{"batch", "batch-secret"}, wantStatus: 400, wantError: "invalid_scope"},
		{name: "wrong secret", form: grant, basic: []string{"web", "nope"},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "unknown client", form: with("client_id", "ghost", "client_secret", "x"),
			wantStatus: 401, wantError: "invalid_client"},
		{name: "no credentials", form: grant, wantStatus: 401, wantError: "invalid_client"},
		{name: "both auth methods", form: with("client_id", "web", "client_secret", "x"),
			basic: []string{"web", testClients[0].Secret}, wantStatus: 400,
			wantError: "invalid_request"},
		{name: "password grant", form: url.Values{"grant_type": {"password"}},
			basic: []string{"web", testClients[0].Secret}, wantStatus: 400,
			wantError: "unsupported_grant_type"},
		{name: "GET", method: http.MethodGet, form: grant,
			basic: []string{"web", testClients[0].Secret}, wantStatus: 405},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}

			a := s.postToken(t, method, tt.form, tt.basic)
			if a.status != tt.wantStatus {
				t.Fatalf("status = %d (error %q), want %d", a.status, a.Error, tt.wantStatus)
			}
			if a.Error != tt.wantError && tt.wantStatus != 405 {
				t.Errorf("error = %q, want %q", a.Error, tt.wantError)
			}
			if tt.wantStatus == 401 && tt.basic != nil &&
				a.header.Get("WWW-Authenticate") != `Basic realm="devissuer"` {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge",
					a.header.Get("WWW-Authenticate"))
			}
			if tt.wantStatus != 200 {
				return
			}

			if a.Token == "" || a.Type != "Bearer" || a.ExpiresIn != 900 || a.Scope != tt.wantScope {
				t.Errorf("answer = %+v, want a Bearer token for 900s with scope %q",
					a, tt.wantScope)
			}
			if cc := a.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		})
	}
}

// verifier checks tokens of s, finding its keys through OpenID discovery.
func (s *server) verifier(t *testing.T) *jwtauth.Verifier {
	t.Helper()

	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer: s.issuer.URL(), Audiences: []string{"gatehouse"}, Discovery: true,
	}}, jwtauth.WithClock(s.clock.Now), jwtauth.WithRefreshCooldown(time.Minute))
	if err != nil {
		t.Fatalf("jwtauth.New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}

	return v
}

func TestTokensVerify(t *testing.T) {
	s := newServer(t)
	v := s.verifier(t)

	tests := []struct {
		name       string
		client     devissuer.Client
		wantScopes []string
		wantRoles  []string
		wantTenant any
	}{
		{"ES256 client with roles and claims", testClients[0],
			[]string{"orders.read", "orders.write"}, []string{"clerk"}, "acme"},
		{"RS256 client", testClients[1], []string{"orders.read"}, nil, nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := s.postToken(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}},
				[]string{tt.client.ID, tt.client.Secret})
			if a.status != http.StatusOK {
				t.Fatalf("token status = %d", a.status)
			}

			p, err := v.Verify(context.Background(), a.Token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != tt.client.ID || p.ClientID != tt.client.ID {
				t.Errorf("subject %q client %q, want %q", p.Subject, p.ClientID, tt.client.ID)
			}
			if !slices.Equal(p.Scopes, tt.wantScopes) || !slices.Equal(p.Roles, tt.wantRoles) {
				t.Errorf("scopes %q roles %q, want %q %q", p.Scopes, p.Roles,
					tt.wantScopes, tt.wantRoles)
			}
			if p.Claims["tenant"] != tt.wantTenant {
				t.Errorf("tenant claim = %v, want %v", p.Claims["tenant"], tt.wantTenant)
			}
		})
	}
}

func TestDiscoveryDocument(t *testing.T) {
	s := newServer(t)

	resp, err := s.Client().Get(s.URL + devissuer.DiscoveryPath)
	if err != nil {
		t.Fatalf("GET discovery: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode discovery: %v", err)
	}

	want := map[string]string{
		"issuer":         s.issuer.URL(),
		"jwks_uri":       s.issuer.URL() + devissuer.JWKSPath,
		"token_endpoint": s.issuer.URL() + devissuer.TokenPath,
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
}

func publishedKids(t *testing.T, s *server) []string {
	t.Helper()

	resp, err := s.Client().Get(s.URL + devissuer.JWKSPath)
	if err != nil {
		t.Fatalf("GET JWKS: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}

	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS publishes private key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}

	return kids
}

func TestRotation(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	s := newServer(t, devissuer.WithRotationGrace(time.Hour), devissuer.WithKeyFile(keyFile))
	v := s.verifier(t)
	oldKid := s.ring.KeyID(devissuer.ES256)

	old := s.postToken(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}},
		[]string{"web", testClients[0].Secret})

	if err := s.issuer.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	newKid := s.ring.KeyID(devissuer.ES256)
	if newKid == oldKid {
		t.Fatal("Rotate kept the ES256 kid")
	}

	kids := publishedKids(t, s)
	if !slices.Contains(kids, oldKid) || !slices.Contains(kids, newKid) || len(kids) != 4 {
		t.Fatalf("JWKS during the grace period = %q, want old and new keys of both algorithms",
			kids)
	}
	if _, err := v.Verify(context.Background(), old.Token); err != nil {
		t.Fatalf("token of the old key during the grace period: %v", err)
	}
	if saved, err := devissuer.LoadKeyRing(keyFile); err != nil ||
		saved.KeyID(devissuer.ES256) != newKid {
		t.Fatalf("key file after rotation: %v, want the new kid saved", err)
	}

	s.clock.Advance(time.Hour)
	if kids := publishedKids(t, s); slices.Contains(kids, oldKid) || len(kids) != 2 {
		t.Fatalf("JWKS after the grace period = %q, want only the new keys", kids)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keys.json")

	ring, created, err := devissuer.LoadOrCreateKeyRing(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateKeyRing = %v, created %v; want a new ring", err, created)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat key file: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode = %v, want 0600", mode)
	}
	if dir, err := os.Stat(filepath.Dir(path)); err != nil || dir.Mode().Perm() != 0o700 {
		t.Errorf("key folder mode = %v (%v), want 0700", dir.Mode().Perm(), err)
	}

	again, created, err := devissuer.LoadOrCreateKeyRing(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateKeyRing = %v, created %v; want the saved ring", err, created)
	}
	for _, alg := range []string{devissuer.ES256, devissuer.RS256} {
		if again.KeyID(alg) != ring.KeyID(alg) || ring.KeyID(alg) == "" {
			t.Errorf("%s kid after reload = %q, want %q", alg, again.KeyID(alg), ring.KeyID(alg))
		}
	}
}

func TestLoadKeyRingRefuses(t *testing.T) {
	ring, err := devissuer.GenerateKeyRing()
	if err != nil {
		t.Fatalf("GenerateKeyRing: %v", err)
	}
	public, err := json.Marshal(map[string]any{"active": ring.JWKS(time.Now()).Keys})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}

	tests := []struct {
		name string
		body string
	}{
		{"not JSON", "{"},
		{"no keys", `{"active":[]}`},
		{"public keys only", string(public)},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatalf("write: %v", err)
			}
			if _, err := devissuer.LoadKeyRing(path); err == nil {
				t.Fatal("LoadKeyRing succeeded")
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := devissuer.LoadKeyRing(filepath.Join(t.TempDir(), "none.json"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("LoadKeyRing error = %v, want os.ErrNotExist", err)
		}
	})
}

func TestNewValidates(t *testing.T) {
	ring, err := devissuer.GenerateKeyRing()
	if err != nil {
		t.Fatalf("GenerateKeyRing: %v", err)
	}
	ok := devissuer.Config{Issuer: "http://127.0.0.1:8081", Audience: "a", Clients: testClients}

	tests := []struct {
		name string
		edit func(*devissuer.Config)
		opts []devissuer.Option
	}{
		{"issuer with path", func(c *devissuer.Config) { c.Issuer += "/realm" }, nil},
		{"issuer not http", func(c *devissuer.Config) { c.Issuer = "ftp://127.0.0.1" }, nil},
		{"no audience", func(c *devissuer.Config) { c.Audience = "" }, nil},
		{"no clients", func(c *devissuer.Config) { c.Clients = nil }, nil},
		{"client without secret", func(c *devissuer.Config) {
			c.Clients = []devissuer.Client{{ID: "x"}}
		}, nil},
		{"duplicate client", func(c *devissuer.Config) {
			c.Clients = []devissuer.Client{testClients[0], testClients[0]}
		}, nil},
		{"HS256 client", func(c *devissuer.Config) {
			c.Clients = []devissuer.Client{{ID: "x", Secret: "y", Algorithm: "HS256"}}
		}, nil},
		{"scope with a space", func(c *devissuer.Config) {
			c.Clients = []devissuer.Client{{ID: "x", Secret: "y", Scopes: []string{"a b"}}}
		}, nil},
		{"grace shorter than TTL", nil, []devissuer.Option{devissuer.WithRotationGrace(time.Minute)}},
		{"nil logger", nil, []devissuer.Option{devissuer.WithLogger(nil)}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			if _, err := devissuer.New(cfg, ring, tt.opts...); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}

	t.Run("nil ring", func(t *testing.T) {
		if _, err := devissuer.New(ok, nil); err == nil {
			t.Fatal("New without keys succeeded")
		}
	})
}
