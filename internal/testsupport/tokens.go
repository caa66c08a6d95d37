package testsupport

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/devissuer"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

// TokenAudience is the audience of the tokens a TokenIssuer mints and its
// verifiers accept: the binaries' default.
const TokenAudience = "gatehouse"

// TokenClientID is the OAuth client id of the tokens a TokenIssuer mints.
const TokenClientID = "test-client"

// TokenIssuer is a dev OAuth issuer (package devissuer) serving its
// OpenID discovery document and keys on 127.0.0.1 until the test ends, for
// tests that need real bearer tokens checked by a real verifier. It is
// safe for concurrent use.
type TokenIssuer struct {
	// URL is the issuer URL, the iss of its tokens.
	URL  string
	ring *devissuer.KeyRing
}

// NewTokenIssuer starts an issuer with fresh keys.
func NewTokenIssuer(t testing.TB) *TokenIssuer {
	t.Helper()

	ring, err := devissuer.GenerateKeyRing()
	if err != nil {
		t.Fatalf("generate issuer keys: %v", err)
	}

	// httptest listens on 127.0.0.1; the URL must be known to build the
	// issuer, so the handler is set before the server starts.
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()

	iss, err := devissuer.New(devissuer.Config{
		Issuer:   url,
		Audience: TokenAudience,
		// Tokens are minted directly (Token); the client is only there
		// because the issuer needs one.
		Clients: []devissuer.Client{{ID: TokenClientID, Secret: "test-secret"}},
	}, ring)
	if err != nil {
		srv.Close()
		t.Fatalf("start token issuer: %v", err)
	}

	srv.Config.Handler = iss
	srv.Start()
	t.Cleanup(srv.Close)

	return &TokenIssuer{URL: url, ring: ring}
}

// Flags are the binaries' token flags for this issuer.
func (i *TokenIssuer) Flags() authflags.Flags {
	return authflags.Flags{
		Issuer:       i.URL,
		Audience:     TokenAudience,
		Algorithms:   strings.Join([]string{jwtauth.ES256, jwtauth.RS256}, ","),
		StartTimeout: 10 * time.Second,
	}
}

// Verifier returns a started verifier of the issuer's tokens, built the
// way the binaries build theirs, which finds the keys through OpenID
// discovery. It is closed when the test ends.
func (i *TokenIssuer) Verifier(t testing.TB) *jwtauth.Verifier {
	t.Helper()

	flags := i.Flags()

	v, err := flags.Verifier(context.Background(), zap.NewNop())
	if err != nil {
		t.Fatalf("token verifier for %s: %v", i.URL, err)
	}

	t.Cleanup(func() { _ = v.Close() })

	return v
}

// Token mints a token for subject granting scopes, valid for ten minutes.
func (i *TokenIssuer) Token(t testing.TB, subject string, scopes ...string) string {
	t.Helper()

	now := time.Now()

	token, err := i.ring.Mint(devissuer.ES256, devissuer.TokenClaims{
		Issuer:   i.URL,
		Subject:  subject,
		Audience: []string{TokenAudience},
		ClientID: TokenClientID,
		Scopes:   scopes,
		IssuedAt: now,
		Expiry:   now.Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("mint token for %q: %v", subject, err)
	}

	return token
}

// WithToken returns ctx carrying token as the bearer token of outgoing
// gRPC calls.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
