package jwtauth_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		headers []string
		want    string
		wantErr error
	}{
		{name: "bearer", target: "/", headers: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "lower-case scheme", target: "/", headers: []string{"bearer abc"}, want: "abc"},
		{name: "upper-case scheme", target: "/", headers: []string{"BEARER abc"}, want: "abc"},
		{name: "several spaces", target: "/", headers: []string{"Bearer   abc"}, want: "abc"},
		{name: "padding", target: "/", headers: []string{"Bearer a+b/c=="}, want: "a+b/c=="},
		{name: "no header", target: "/", wantErr: jwtauth.ErrNoToken},
		{name: "basic", target: "/", headers: []string{"Basic dXNlcjpwYXNz"},
			wantErr: jwtauth.ErrUnsupportedScheme},
		{name: "scheme glued to token", target: "/", headers: []string{"Bearerabc"},
			wantErr: jwtauth.ErrUnsupportedScheme},
		{name: "scheme only", target: "/", headers: []string{"Bearer"},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "only padding", target: "/", headers: []string{"Bearer =="},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "two tokens in one header", target: "/", headers: []string{"Bearer a, Bearer b"},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "two headers", target: "/", headers: []string{"Bearer a", "Bearer b"},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "quote in token", target: "/", headers: []string{`Bearer a"b`},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "padding in the middle", target: "/", headers: []string{"Bearer a=b"},
			wantErr: jwtauth.ErrMalformedHeader},
		{name: "token in query", target: "/?access_token=abc",
			wantErr: jwtauth.ErrTokenInQuery},
		{name: "token in query beside a header", target: "/?x=1&access_token=abc",
			headers: []string{"Bearer abc"}, wantErr: jwtauth.ErrTokenInQuery},
		{name: "token in query, underscore encoded", target: "/?access%5Ftoken=abc",
			wantErr: jwtauth.ErrTokenInQuery},
		{name: "token in query, letter encoded", target: "/?x=%20&%61ccess_token=abc",
			headers: []string{"Bearer abc"}, wantErr: jwtauth.ErrTokenInQuery},
		{name: "encoded query without a token", target: "/?q=a%20b",
			headers: []string{"Bearer abc"}, want: "abc"},
		{name: "similar query name", target: "/?access_token_hint=1",
			headers: []string{"Bearer abc"}, want: "abc"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}

			got, err := jwtauth.BearerToken(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("BearerToken error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("BearerToken = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChallengeFor(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantHeader string
	}{
		{"no token", jwtauth.ErrNoToken, 401, `Bearer realm="gh"`},
		{"other scheme", jwtauth.ErrUnsupportedScheme, 401, `Bearer realm="gh"`},
		{"malformed header", jwtauth.ErrMalformedHeader, 400,
			`Bearer realm="gh", error="invalid_request", ` +
				`error_description="malformed authorization header"`},
		{"token in query", jwtauth.ErrTokenInQuery, 400,
			`Bearer realm="gh", error="invalid_request", ` +
				`error_description="access token not accepted in the query string"`},
		{"expired", fmt.Errorf("x: %w", jwtauth.ErrTokenExpired), 401,
			`Bearer realm="gh", error="invalid_token", error_description="token expired"`},
		{"not yet valid", jwtauth.ErrTokenNotYetValid, 401,
			`Bearer realm="gh", error="invalid_token", error_description="token not yet valid"`},
		{"bad signature", jwtauth.ErrBadSignature, 401,
			`Bearer realm="gh", error="invalid_token", error_description="invalid token"`},
		{"unknown error", errors.New("boom"), 401,
			`Bearer realm="gh", error="invalid_token", error_description="invalid token"`},
		{"keys unavailable", jwtauth.ErrKeysUnavailable, 503, ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := jwtauth.ChallengeFor(tt.err)
			if c.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d", c.Status, tt.wantStatus)
			}
			if got := c.Header("gh"); got != tt.wantHeader {
				t.Errorf("Header = %s, want %s", got, tt.wantHeader)
			}
		})
	}
}

func TestInsufficientScopeHeader(t *testing.T) {
	c := jwtauth.InsufficientScope(`needs "more"`, "orders.read", "orders.write")

	want := `Bearer realm="gh", error="insufficient_scope", ` +
		`error_description="needs more", scope="orders.read orders.write"`
	if got := c.Header("gh"); got != want {
		t.Fatalf("Header = %s, want %s", got, want)
	}
	if c.Status != http.StatusForbidden {
		t.Errorf("Status = %d, want 403", c.Status)
	}
}
