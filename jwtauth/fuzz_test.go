package jwtauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
	jose "github.com/go-jose/go-jose/v4"
)

// headerErrors and tokenErrors are every error the token path may return.
var (
	headerErrors = []error{jwtauth.ErrNoToken, jwtauth.ErrUnsupportedScheme,
		jwtauth.ErrMalformedHeader}
	tokenErrors = []error{jwtauth.ErrTokenTooLarge, jwtauth.ErrMalformedToken,
		jwtauth.ErrAlgorithmNotAllowed, jwtauth.ErrUnknownIssuer, jwtauth.ErrUnknownKey,
		jwtauth.ErrBadSignature, jwtauth.ErrTokenExpired, jwtauth.ErrTokenNotYetValid,
		jwtauth.ErrWrongAudience, jwtauth.ErrMissingClaim}
)

func isOneOf(err error, targets []error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}

	return false
}

// fileVerifier returns a started verifier for testIssuer reading keys from a
// JWKS file, with the clock fixed at clk.
func fileVerifier(tb testing.TB, clk *clock, opts []jwtauth.Option, keys ...*testKey) *jwtauth.Verifier {
	tb.Helper()

	path := filepath.Join(tb.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(tb, keys...), 0o600); err != nil {
		tb.Fatalf("write JWKS: %v", err)
	}

	opts = append([]jwtauth.Option{jwtauth.WithClock(clk.Now)}, opts...)
	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: path,
	}}, opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = v.Close() })

	if err := v.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}

	return v
}

// FuzzVerify feeds Authorization header values through the whole token
// path. Whatever the input, the outcome must be one of the documented
// sentinels, or a principal of the one subject the seed tokens carry: the
// fuzzer cannot forge a signature.
func FuzzVerify(f *testing.F) {
	clk := newClock()
	es, rs := newKey(f, "ES256", "es"), newKey(f, "RS256", "rs")
	v := fileVerifier(f, clk, nil, es, rs)
	now := clk.Now()
	base := claimsAt(now)

	for _, seed := range []string{
		"Bearer " + es.sign(f, base, nil),
		"Bearer " + rs.sign(f, base, nil),
		"bearer " + es.sign(f, with(base, "aud", []string{"x", testAudience}), nil),
		"Bearer " + unsignedToken(f, base),
		"Bearer " + es.sign(f, with(base, "exp", now.Add(-time.Hour).Unix()), nil),
		"Bearer " + es.sign(f, with(base, "sub", nil), nil),
		"Bearer " + es.sign(f, base, map[string]any{"crit": []string{"exp"}}),
		"Bearer " + signWith(f, jose.HS256, make([]byte, 32), base, nil),
		"Bearer e30.e30.e30",
		"Bearer ..",
		"Bearer " + strings.Repeat("A", 10_000),
		"Basic YTpi",
		"Bearer",
		"",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, header string) {
		token, err := jwtauth.ParseAuthorization([]string{header})
		if err != nil {
			if !isOneOf(err, headerErrors) {
				t.Fatalf("ParseAuthorization(%q) error %v is not a documented sentinel", header, err)
			}
			return
		}

		p, err := v.Verify(context.Background(), token)
		if err != nil {
			if !isOneOf(err, tokenErrors) {
				t.Fatalf("Verify error %v is not a documented sentinel", err)
			}
			if p != nil {
				t.Fatalf("Verify returned a principal with error %v", err)
			}
			// Long enough not to occur by chance in the fixed texts.
			h := jwtauth.ChallengeFor(err).Header("r")
			if len(token) >= 16 && strings.Contains(h, token) {
				t.Fatalf("challenge %q echoes the token", h)
			}
			return
		}

		if p.Subject != "alice" || p.Issuer != testIssuer {
			t.Fatalf("Verify accepted a token for %q from %q", p.Subject, p.Issuer)
		}
	})
}
