package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/devissuer"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"
)

// routes stands in for grpc-gateway's route matching in these tests.
var routes = map[string]string{
	"GET /v1/products": "/gatehouse.catalog.v1.CatalogService/ListProducts",
	"GET /v1/orders":   "/gatehouse.orders.v1.OrderService/ListOrders",
	"POST /v1/orders":  "/gatehouse.orders.v1.OrderService/CreateOrder",
}

func resolve(r *http.Request) (string, bool) {
	m, ok := routes[r.Method+" "+r.URL.Path]
	return m, ok
}

// backend is the handler behind the middleware: it counts the requests
// that reach it and remembers what they carried.
type backend struct {
	mu      sync.Mutex
	calls   int
	header  http.Header
	subject string
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.calls++
	b.header = r.Header.Clone()
	b.subject = ""
	if p, ok := jwtauth.PrincipalFrom(r.Context()); ok {
		b.subject = p.Subject
	}
	b.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (b *backend) seen() (int, http.Header, string) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.calls, b.header, b.subject
}

// serveGuarded runs the middleware around a backend on a real HTTP server.
func serveGuarded(t *testing.T, g *auth.Guard) (*httptest.Server, *backend) {
	t.Helper()

	b := &backend{}
	srv := httptest.NewServer(g.HTTPMiddleware(resolve)(b))
	t.Cleanup(srv.Close)

	return srv, b
}

// hostileCase is one request and its exact expected outcome.
type hostileCase struct {
	name    string
	method  string // default POST
	path    string // default /v1/orders (needs orders.write)
	query   string
	auth    []string
	wantErr error // from Guard.CheckHTTP; nil means allowed
	// wantStatus is the HTTP status; wantChallenge the RFC 6750 error code
	// in WWW-Authenticate ("" for a bare challenge, "-" for no header).
	wantStatus    int
	wantChallenge string
}

func bearer(token string) []string { return []string{"Bearer " + token} }

func TestHostileRequests(t *testing.T) {
	f := newFixture(t)
	srv, _ := serveGuarded(t, f.guard)
	now := f.clock.Now()
	valid := f.mintWith(t, func(*devissuer.TokenClaims) {})
	raw := f.rawClaims()

	tampered := strings.Split(valid, ".")
	tampered[1] = strings.TrimRight(tampered[1], "=") + "x"

	cases := []hostileCase{
		{name: "missing header", wantErr: jwtauth.ErrNoToken,
			wantStatus: 401, wantChallenge: ""},
		{name: "wrong scheme", auth: []string{"Basic YWxpY2U6cHc="},
			wantErr: jwtauth.ErrUnsupportedScheme, wantStatus: 401, wantChallenge: ""},
		{name: "empty token", auth: []string{"Bearer "},
			wantErr: jwtauth.ErrMalformedHeader, wantStatus: 400, wantChallenge: "invalid_request"},
		{name: "two authorization headers", auth: []string{"Bearer " + valid, "Bearer " + valid},
			wantErr: jwtauth.ErrMalformedHeader, wantStatus: 400, wantChallenge: "invalid_request"},
		{name: "garbage", auth: bearer("abc.def"),
			wantErr: jwtauth.ErrMalformedToken, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "alg none", auth: bearer(unsigned(t, raw)),
			wantErr: jwtauth.ErrAlgorithmNotAllowed, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "HS256 signed with the RS256 public key",
			auth: bearer(signRaw(t, jose.HS256, publicKeyPEM(t, f.rsaPublicJWK(t)),
				f.ring.KeyID(devissuer.RS256), raw)),
			wantErr: jwtauth.ErrAlgorithmNotAllowed, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "unknown kid", auth: bearer(f.foreignToken(t, "no-such-kid")),
			wantErr: jwtauth.ErrUnknownKey, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "kid of a removed key",
			auth:    bearer(mintRetired(t, f, f.claims("alice", "orders.write"))),
			wantErr: jwtauth.ErrUnknownKey, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "published kid, foreign key",
			auth:    bearer(f.foreignToken(t, f.ring.KeyID(devissuer.ES256))),
			wantErr: jwtauth.ErrBadSignature, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "payload tampered", auth: bearer(strings.Join(tampered, ".")),
			wantErr: jwtauth.ErrMalformedToken, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "expired", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.IssuedAt, c.Expiry = now.Add(-time.Hour), now.Add(-time.Minute)
		})), wantErr: jwtauth.ErrTokenExpired, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "not yet valid", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.IssuedAt, c.Expiry = now.Add(time.Hour), now.Add(2*time.Hour)
		})), wantErr: jwtauth.ErrTokenNotYetValid, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "wrong issuer", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Issuer = "http://127.0.0.1:1"
		})), wantErr: jwtauth.ErrUnknownIssuer, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "wrong audience", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Audience = []string{"billing"}
		})), wantErr: jwtauth.ErrWrongAudience, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "audience array without us", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Audience = []string{"billing", "gatehouse-admin"}
		})), wantErr: jwtauth.ErrWrongAudience, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "missing sub", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Subject = ""
		})), wantErr: jwtauth.ErrMissingClaim, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "missing exp", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Expiry = time.Time{}
		})), wantErr: jwtauth.ErrMissingClaim, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "oversize token", auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
			c.Extra = map[string]any{"pad": strings.Repeat("p", 10_000)}
		})), wantErr: jwtauth.ErrTokenTooLarge, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "token in the query string", query: "access_token=" + valid,
			wantErr: jwtauth.ErrTokenInQuery, wantStatus: 400, wantChallenge: "invalid_request"},
		{name: "token in the query string and the header", query: "access_token=" + valid,
			auth: bearer(valid), wantErr: jwtauth.ErrTokenInQuery, wantStatus: 400,
			wantChallenge: "invalid_request"},
		{name: "valid token lacking the scope",
			auth:    bearer(f.mint(t, devissuer.ES256, f.claims("bob", "orders.read"))),
			wantErr: authz.ErrForbidden, wantStatus: 403, wantChallenge: "insufficient_scope"},
		{name: "valid token with the scope", auth: bearer(valid),
			wantStatus: 200, wantChallenge: "-"},
		{name: "valid RS256 token with the scope",
			auth:       bearer(f.mint(t, devissuer.RS256, f.claims("carol", "orders.write"))),
			wantStatus: 200, wantChallenge: "-"},
		{name: "token from the client-credentials grant",
			auth:       bearer(f.clientToken(t, "writer", "writer-secret")),
			wantStatus: 200, wantChallenge: "-"},
		{name: "lower-case scheme", auth: []string{"bearer " + valid},
			wantStatus: 200, wantChallenge: "-"},
		{name: "public route without a token", method: "GET", path: "/v1/products",
			wantStatus: 200, wantChallenge: "-"},
		{name: "public route with an expired token", method: "GET", path: "/v1/products",
			auth: bearer(f.mintWith(t, func(c *devissuer.TokenClaims) {
				c.IssuedAt, c.Expiry = now.Add(-time.Hour), now.Add(-time.Minute)
			})), wantErr: jwtauth.ErrTokenExpired, wantStatus: 401, wantChallenge: "invalid_token"},
		{name: "public route with a token in the query", method: "GET", path: "/v1/products",
			query: "access_token=x", wantErr: jwtauth.ErrTokenInQuery, wantStatus: 400,
			wantChallenge: "invalid_request"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runHostileCase(t, f.guard, srv, tc)
		})
	}
}

// runHostileCase checks one case twice: the sentinel through
// Guard.CheckHTTP, then the HTTP answer through the middleware on a real
// server.
func runHostileCase(t *testing.T, g *auth.Guard, srv *httptest.Server, tc hostileCase) {
	t.Helper()

	if tc.method == "" {
		tc.method = http.MethodPost
	}
	if tc.path == "" {
		tc.path = "/v1/orders"
	}
	url := srv.URL + tc.path
	if tc.query != "" {
		url += "?" + tc.query
	}

	build := func() *http.Request {
		req, err := http.NewRequest(tc.method, url, strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("build request: %v", err)
		}
		for _, a := range tc.auth {
			req.Header.Add("Authorization", a)
		}
		return req
	}

	method, _ := routes[tc.method+" "+tc.path]
	if _, err := g.CheckHTTP(build(), method); !errors.Is(err, tc.wantErr) {
		t.Fatalf("CheckHTTP error = %v, want %v", err, tc.wantErr)
	}

	resp, err := srv.Client().Do(build())
	if err != nil {
		t.Fatalf("%s %s: %v", tc.method, tc.path, err)
	}
	defer func() { _ = resp.Body.Close() }()

	if resp.StatusCode != tc.wantStatus {
		t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
	}
	checkChallenge(t, resp.Header.Values("WWW-Authenticate"), tc.wantChallenge)
	if tc.wantStatus != http.StatusOK {
		checkStatusBody(t, resp, codeOf(tc.wantStatus))
	}
}

var errorAttr = regexp.MustCompile(`error="([^"]*)"`)

func checkChallenge(t *testing.T, values []string, want string) {
	t.Helper()

	if want == "-" {
		if len(values) != 0 {
			t.Errorf("WWW-Authenticate = %q, want none", values)
		}
		return
	}

	if len(values) != 1 || !strings.HasPrefix(values[0], `Bearer realm="gatehouse"`) {
		t.Fatalf("WWW-Authenticate = %q, want one Bearer challenge", values)
	}

	got := ""
	if m := errorAttr.FindStringSubmatch(values[0]); m != nil {
		got = m[1]
	}
	if got != want {
		t.Errorf("challenge error = %q, want %q (header %s)", got, want, values[0])
	}
}

func codeOf(httpStatus int) codes.Code {
	switch httpStatus {
	case 400:
		return codes.InvalidArgument
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 503:
		return codes.Unavailable
	}

	return codes.Unauthenticated
}

// checkStatusBody checks the JSON google.rpc.Status body of a refusal.
func checkStatusBody(t *testing.T, resp *http.Response, want codes.Code) {
	t.Helper()

	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}

	var body struct {
		Code    *int              `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode status body: %v", err)
	}

	if body.Code == nil || codes.Code(*body.Code) != want {
		t.Errorf("body code = %v, want %d", body.Code, want)
	}
	if body.Message == "" || body.Details == nil || len(body.Details) != 0 {
		t.Errorf("body = %+v, want a message and an empty details array", body)
	}
}

// mintRetired signs with a key the issuer rotated out and no longer
// publishes.
func mintRetired(t *testing.T, f *fixture, c devissuer.TokenClaims) string {
	t.Helper()

	token, err := f.retired.Mint(devissuer.ES256, c)
	if err != nil {
		t.Fatalf("mint with a retired key: %v", err)
	}

	return token
}

func TestRefusedRequestsNeverReachTheBackend(t *testing.T) {
	f := newFixture(t)
	srv, b := serveGuarded(t, f.guard)
	reader := f.mint(t, devissuer.ES256, f.claims("bob", "orders.read"))

	for _, auth := range [][]string{nil, bearer("x.y.z"), bearer(reader)} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/orders", nil)
		if err != nil {
			t.Fatalf("build request: %v", err)
		}
		for _, a := range auth {
			req.Header.Add("Authorization", a)
		}

		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("request with %q allowed", auth)
		}
	}

	if calls, _, _ := b.seen(); calls != 0 {
		t.Fatalf("backend called %d times for refused requests", calls)
	}
}

func TestMiddlewareStripsAndForwards(t *testing.T) {
	f := newFixture(t)
	srv, b := serveGuarded(t, f.guard)
	token := f.mint(t, devissuer.ES256, f.claims("alice", "orders.write"))

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/orders", nil)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	req.Header.Set("Authorization", "bEaReR "+token)
	req.Header.Set("X-Gatehouse-Principal", "admin")
	req.Header.Set("x-gatehouse-roles", "admin")
	req.Header.Set("Grpc-Metadata-X-Gatehouse-Subject", "admin")
	req.Header.Set("Grpc-Metadata-Authorization", "Bearer forged")
	req.Header.Set("X-Request-Id", "keep-me")

	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}

	calls, header, subject := b.seen()
	if calls != 1 {
		t.Fatalf("backend calls = %d, want 1", calls)
	}
	if subject != "alice" {
		t.Errorf("principal subject in the backend context = %q, want alice", subject)
	}
	if got := header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("Authorization forwarded = %q, want the token with a canonical scheme", got)
	}
	for name := range header {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-gatehouse-") || strings.HasPrefix(lower, "grpc-metadata-") {
			t.Errorf("client header %s reached the backend", name)
		}
	}
	if header.Get("X-Request-Id") != "keep-me" {
		t.Errorf("unrelated header X-Request-Id was not forwarded")
	}
}

// The middleware hands the backend its own copy of the headers whenever it
// changes them: the request the outer layers (access log, metrics) hold
// keeps what the client sent.
func TestMiddlewareLeavesCallerRequestAlone(t *testing.T) {
	f := newFixture(t)
	token := f.mint(t, devissuer.ES256, f.claims("alice", "orders.write"))
	b := &backend{}
	h := f.guard.HTTPMiddleware(resolve)(b)

	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"canonical bearer, nothing to strip", map[string]string{
			"Authorization": "Bearer " + token}},
		{"odd scheme case", map[string]string{"Authorization": "bEaReR " + token}},
		{"identity header", map[string]string{
			"Authorization": "Bearer " + token, "X-Gatehouse-Principal": "admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/orders", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			before := req.Header.Clone()

			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200", rec.Code)
			}
			if !reflect.DeepEqual(req.Header, before) {
				t.Errorf("caller's headers changed: %v, were %v", req.Header, before)
			}
			_, header, _ := b.seen()
			if got := header.Values("Authorization"); len(got) != 1 ||
				got[0] != "Bearer "+token {
				t.Errorf("Authorization forwarded = %q, want canonical", got)
			}
			if header.Get("X-Gatehouse-Principal") != "" {
				t.Errorf("X-Gatehouse-Principal reached the backend")
			}
		})
	}
}

func TestUnmatchedRoutes(t *testing.T) {
	f := newFixture(t)

	t.Run("default 404", func(t *testing.T) {
		srv, b := serveGuarded(t, f.guard)

		resp, err := srv.Client().Get(srv.URL + "/v1/secret")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer func() { _ = resp.Body.Close() }()

		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status = %d, want 404", resp.StatusCode)
		}
		checkStatusBody(t, resp, codes.NotFound)
		if calls, _, _ := b.seen(); calls != 0 {
			t.Errorf("backend called %d times for an unmatched route", calls)
		}
	})

	t.Run("handed to the unmatched handler", func(t *testing.T) {
		passed := make(chan http.Header, 1)
		g, err := auth.New(f.verifier, f.policy,
			auth.WithUnmatchedHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				passed <- r.Header.Clone()
				w.WriteHeader(http.StatusTeapot)
			})))
		if err != nil {
			t.Fatalf("auth.New: %v", err)
		}
		srv, _ := serveGuarded(t, g)

		req, err := http.NewRequest(http.MethodGet, srv.URL+"/elsewhere", nil)
		if err != nil {
			t.Fatalf("build request: %v", err)
		}
		req.Header.Set("X-Gatehouse-Principal", "admin")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_ = resp.Body.Close()

		if resp.StatusCode != http.StatusTeapot {
			t.Fatalf("status = %d, want the unmatched handler's 418", resp.StatusCode)
		}
		if h := <-passed; h.Get("X-Gatehouse-Principal") != "" {
			t.Error("identity header reached the unmatched handler")
		}
	})
}

func TestJWKSDownWithKeysCached(t *testing.T) {
	f := newFixture(t)
	srv, _ := serveGuarded(t, f.guard)

	f.down.Store(true)
	if err := f.verifier.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded with the JWKS endpoint down")
	}

	// A token never seen before: its signature is checked with the cached
	// keys.
	runHostileCase(t, f.guard, srv, hostileCase{
		name: "JWKS down", auth: bearer(f.mint(t, devissuer.ES256, f.claims("dan", "orders.write"))),
		wantStatus: 200, wantChallenge: "-",
	})

	// Past the maximum staleness the edge answers 503, not 401.
	f.clock.Advance(jwtauth.DefaultMaxStaleness + time.Second)
	runHostileCase(t, f.guard, srv, hostileCase{
		name:    "JWKS down and keys stale",
		auth:    bearer(f.mint(t, devissuer.ES256, f.claims("dan", "orders.write"))),
		wantErr: jwtauth.ErrKeysUnavailable, wantStatus: 503, wantChallenge: "-",
	})
}

func TestJWKSRotation(t *testing.T) {
	f := newFixture(t)
	srv, _ := serveGuarded(t, f.guard)
	f.clock.Advance(2 * time.Minute) // past the cool-down of Start's fetch
	before := f.jwksFetches.Load()

	if err := f.issuer.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}

	// The first token of the new key costs one fetch, the next ones none.
	for _, subject := range []string{"erin", "frank"} {
		runHostileCase(t, f.guard, srv, hostileCase{
			auth:       bearer(f.mint(t, devissuer.ES256, f.claims(subject, "orders.write"))),
			wantStatus: 200, wantChallenge: "-",
		})
	}
	if got := f.jwksFetches.Load() - before; got != 1 {
		t.Fatalf("JWKS fetches for the new kid = %d, want 1", got)
	}

	// Unknown kids inside the cool-down cost no fetch at all.
	for _, kid := range []string{"x1", "x2", "x3"} {
		runHostileCase(t, f.guard, srv, hostileCase{
			auth:    bearer(f.foreignToken(t, kid)),
			wantErr: jwtauth.ErrUnknownKey, wantStatus: 401, wantChallenge: "invalid_token",
		})
	}
	if got := f.jwksFetches.Load() - before; got != 1 {
		t.Fatalf("JWKS fetches after unknown kids in the cool-down = %d, want still 1", got)
	}
}
